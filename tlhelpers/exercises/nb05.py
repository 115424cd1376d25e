"""Self-checks for notebook 05 (embeddings: t-SNE, nearest-neighbour search, classifiers on embeddings)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..embed import nearest_neighbors
from . import judge_choice, report

__all__ = ["check_cosine", "check_k_choice", "check_knn", "check_outlier"]


def check_cosine(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(a, b)`` returns the cosine similarity of two 1-D vectors (a float)."""
    if fn is None:
        return report(False, "", "define `cosine(a, b)`: the dot product divided by the product of the two lengths.")
    g = torch.Generator().manual_seed(1)
    cases = [(torch.randn(512, generator=g), torch.randn(512, generator=g)) for _ in range(3)]
    a = torch.rand(512, generator=g)
    cases += [(a, 3.0 * a), (a, -a)]  # same direction (1), opposite direction (-1)
    for a, b in cases:
        expected = F.cosine_similarity(a, b, dim=0).item()
        try:
            got = fn(a.clone(), b.clone())
            if got is None:
                return report(False, "", "cosine returns None: return the similarity as a number.")
            got = float(got)
        except Exception as e:  # the learner's code: say what went wrong, do not crash the notebook
            return report(False, "", f"cosine(a, b) raised {type(e).__name__}: {e}")
        if not np.isclose(got, expected, atol=1e-4):
            if np.isclose(got, float(a @ b), rtol=1e-4):
                return report(False, "", "that is the plain dot product: divide by the two vectors' lengths (norms).")
            return report(False, "", f"for one pair you return {got:.4f}, expected {expected:.4f}.")
    return report(True, "cosine similarity ignores length: a vector and 3x itself score 1, its opposite -1.", "")


def _votes(query, embeddings, labels, k: int) -> torch.Tensor:
    idx, _ = nearest_neighbors(query, embeddings, k=k)
    neigh = torch.as_tensor(labels).long()[idx]  # Q x k
    num_classes = int(torch.as_tensor(labels).max()) + 1
    return F.one_hot(neigh, num_classes).sum(1)  # Q x K vote counts


def check_knn(preds, query, embeddings, labels, k: int = 5) -> bool:
    """Exercise 2: each prediction is a class with the most votes among the ``k`` nearest neighbours (ties: any)."""
    if preds is None:
        return report(
            False, "", "set `knn_preds`: for each validation embedding, the most common label among its k neighbours."
        )
    votes = _votes(query, embeddings, labels, k)
    preds = torch.as_tensor(np.asarray(preds)).long().ravel()
    if len(preds) != len(votes):
        return report(False, "", f"expected one prediction per validation image ({len(votes)}), got {len(preds)}.")
    if preds.min() < 0 or preds.max() >= votes.shape[1]:
        return report(False, "", f"predictions must be class indices 0..{votes.shape[1] - 1}.")
    best = votes.max(1).values
    ok = votes[torch.arange(len(preds)), preds] == best
    if not ok.all():
        return report(
            False,
            "",
            f"{int((~ok).sum())} predictions are not a majority label of their {k} neighbours "
            "(hint: labels[idx] then torch.mode(dim=1)).",
        )
    return report(True, f"every prediction is the majority vote of its {k} nearest neighbours.", "")


def check_outlier(index, query, embeddings) -> bool:
    """Exercise 4: ``index`` is the query whose nearest neighbour among ``embeddings`` is the least similar."""
    if index is None:
        return report(False, "", "set `outlier` to the index of the validation image with the lowest top-1 similarity.")
    _, sims = nearest_neighbors(query, embeddings, k=1)
    top1 = sims[:, 0]
    expected = int(top1.argmin())
    got = int(index)
    if got == expected or np.isclose(top1[got].item(), top1[expected].item(), atol=1e-6):
        return report(
            True, f"validation image {got}: its closest training image has cosine similarity only {top1[got]:.2f}.", ""
        )
    if got == int(top1.argmax()):
        return report(False, "", "that is the validation image *most* similar to the training set: take the minimum.")
    return report(False, "", "take each validation image's top-1 similarity (k=1), then the index of the smallest one.")


def check_k_choice(k, val_correct: dict, on: str = "validation") -> bool:
    """Exercise 3 (a decision): a ``k`` whose validation accuracy ties with the best k's within noise, judged by
    ``tl.stats.choose`` (paired: every k is scored on the same validation images).

    ``val_correct``: {k: correctness vector on the validation images}, in order of preference.
    """
    return judge_choice(k, val_correct, on=on, what="k values", why_first=" in the order of preference")
