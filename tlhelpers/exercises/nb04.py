"""Self-checks for notebook 04 (cats vs dogs on CIFAR-10: the complete workflow, four ways to train)."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch

from . import report

__all__ = ["check_balanced_first", "check_remap", "check_recall", "check_early_stop"]


def check_balanced_first(indices, targets: Sequence[int], per_class: int = 500, wanted: Sequence[int] = (3, 5)) -> bool:
    """Exercise 1: the first ``per_class`` images of each class in ``wanted`` (file order), in increasing order."""
    if indices is None:
        return report(
            False,
            "",
            "set `indices`: for each class, np.flatnonzero(labels == c)[:500]; then join the two and sort.",
        )
    targets = np.asarray(targets)
    firsts = [np.flatnonzero(targets == c)[:per_class] for c in wanted]
    expected = np.sort(np.concatenate(firsts))
    got = np.asarray(indices).ravel()
    if len(got) != len(expected):
        return report(False, "", f"expected {len(expected):,} indices ({per_class} per class), got {len(got):,}.")
    counts = [int(np.isin(got, f).sum()) for f in firsts]
    if not np.array_equal(np.sort(got), expected):
        if sorted(np.bincount(targets[got])[list(wanted)].tolist()) == [per_class] * len(wanted):
            return report(False, "", "balanced, but not the *first* images of each class in file order.")
        return report(False, "", f"of the first {per_class} of each class you have {counts}: some are missing.")
    if not np.array_equal(got, expected):
        return report(False, "", "the right images, but not in increasing order: sort the joined indices.")
    return report(True, f"{per_class} of each class, chosen from the labels alone, in file order.", "")


def check_remap(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(labels, selected)`` maps each label to its position in ``selected``, vectorised.

    Checked on several class lists (including an unsorted one and three classes) and timed on
    200,000 labels: a per-label Python loop takes about a second there, a lookup table milliseconds.
    """
    if fn is None:
        return report(False, "", "define `remap(labels, selected)` returning each label's position in `selected`.")
    g = torch.Generator().manual_seed(0)
    for selected in ([3, 5], [5, 3], [0, 2, 9]):
        labels = torch.as_tensor(selected)[torch.randint(0, len(selected), (1000,), generator=g)]
        expected = torch.as_tensor([selected.index(v) for v in labels.tolist()])
        try:
            got = fn(labels.clone(), list(selected))
            if got is None:
                return report(False, "", "remap returns None: return a tensor with one position per label.")
            got = torch.as_tensor(got)
        except Exception as e:  # the learner's code: report, do not crash the notebook
            return report(False, "", f"remap(labels, {selected}) raised {type(e).__name__}: {e}")
        if got.shape != expected.shape or not torch.equal(got.long(), expected):
            return report(
                False,
                "",
                f"wrong result for selected={selected}: label {selected[0]} must become 0, "
                f"{selected[1]} must become 1, and so on (order of `selected`, not sorted).",
            )
    big = torch.as_tensor([3, 5])[torch.randint(0, 2, (200_000,), generator=g)]
    t0 = time.perf_counter()
    fn(big, [3, 5])
    seconds = time.perf_counter() - t0
    if seconds > 0.3:
        return report(
            False,
            "",
            f"correct, but {seconds:.2f} s for 200,000 labels: that is a Python loop. "
            "Build a lookup table once (lut[selected] = arange) and index it with all labels.",
        )
    return report(True, f"correct for every class list, and 200,000 labels took {seconds * 1000:.1f} ms.", "")


def check_recall(recall, labels, preds, cls: int = 1, tol: float = 1e-6) -> bool:
    """Exercise 3: the recall of class ``cls`` (share of its true images predicted as it) from labels and
    predictions."""
    if recall is None:
        return report(
            False, "", "set `recall` to (dogs predicted as dog) / (all true dogs): one row of the confusion matrix."
        )
    y, p = torch.as_tensor(labels).long(), torch.as_tensor(preds).long()
    true = y == cls
    expected = ((p == cls) & true).sum().item() / max(int(true.sum()), 1)
    value = float(recall)
    if abs(value - expected) <= tol:
        return report(
            True, f"recall {expected:.3f}: the model finds {expected:.1%} of the true images of this class.", ""
        )
    precision = ((p == cls) & true).sum().item() / max(int((p == cls).sum()), 1)
    if abs(value - precision) <= tol:
        return report(
            False, "", "that is the precision (divided by the predicted column); recall divides by the true row."
        )
    if abs(value - 100 * expected) <= 100 * tol:
        return report(False, "", "right value but in percent: give a fraction between 0 and 1.")
    return report(False, "", "recall = correct predictions of the class / number of true images of the class.")


def check_early_stop(answer, history: Sequence[dict], patience: int = 2, monitor: str = "val_loss") -> bool:
    """Exercise 4 (a decision): ``(stop, keep)``: after which epoch early stopping with ``patience`` stops
    (the last epoch if it never does), and which epoch's weights it keeps (the best ``monitor`` so far, as
    :func:`tlhelpers.train.is_better` ranks it: lowest ``val_loss``, or highest ``val_acc``, ties to the lower loss)."""
    from ..train import is_better

    if answer is None:
        return report(False, "", "set `answer = (stop_epoch, kept_epoch)`, read from the validation curves.")
    try:
        stop, keep = (int(a) for a in answer)
    except (TypeError, ValueError):
        return report(False, "", "answer must be two epoch numbers: (stop_epoch, kept_epoch).")
    what = "validation loss" if monitor == "val_loss" else "validation accuracy"
    best_what = "lowest validation loss" if monitor == "val_loss" else "highest validation accuracy (ties: lower loss)"
    best, waited, want_stop = None, 0, history[-1]["epoch"]
    for h in history:
        if is_better(h, best, monitor):
            best, waited = h, 0
        else:
            waited += 1
            if waited >= patience:
                want_stop = h["epoch"]
                break
    want_keep = best["epoch"]
    if (stop, keep) == (want_stop, want_keep):
        return report(
            True,
            f"it stops after epoch {want_stop} ({patience} epochs without a better {what}) and keeps epoch "
            f"{want_keep}.",
            "",
        )
    if keep != want_keep:
        return report(False, "", f"the kept epoch is the one with the {best_what} up to the stop.")
    return report(
        False,
        "",
        f"count the epochs after the best one: it stops once {patience} in a row bring no better {what}.",
    )
