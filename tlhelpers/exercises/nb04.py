"""Self-checks for notebook 04 (cats vs dogs on CIFAR-10: the complete workflow, four ways to train)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from . import report

__all__ = ["check_filter", "check_partial_optimizer", "check_recall"]


def check_filter(indices, targets: Sequence[int], wanted: Sequence[int] = (3, 5)) -> bool:
    """Exercise 1: ``indices`` are exactly the positions of ``targets`` whose label is in ``wanted``, in order."""
    if indices is None:
        return report(False, "", "set `indices` to the positions of the cat and dog labels "
                                 "(hint: np.isin on the labels array, then np.flatnonzero).")
    targets = np.asarray(targets)
    expected = np.flatnonzero(np.isin(targets, list(wanted)))
    got = np.asarray(indices).ravel()
    if len(got) != len(expected):
        return report(False, "", f"expected {len(expected):,} indices (every cat and dog image), got {len(got):,}.")
    if not np.array_equal(np.sort(got), expected):
        return report(False, "", "some indices point at images of other classes, or some cats/dogs are missing.")
    if not np.array_equal(got, expected):
        return report(False, "", "the right indices, but not in increasing order: np.flatnonzero keeps the file order.")
    return report(True, f"{len(got):,} cat and dog images found from the labels alone, without decoding one image.", "")


def check_partial_optimizer(model: nn.Module, optimizer, lrs: dict[str, float] | None = None) -> bool:
    """Exercise 2: an optimizer with one group for ``layer4`` and one for ``fc``, each at its own learning rate,
    holding exactly the trainable parameters of ``model`` (and no frozen ones)."""
    lrs = lrs or {"layer4": 1e-4, "fc": 1e-3}
    if optimizer is None:
        return report(False, "", "build `optimizer = torch.optim.Adam([{...layer4, lr 1e-4}, {...fc, lr 1e-3}])`.")
    if not isinstance(optimizer, torch.optim.Optimizer):
        return report(False, "", f"`optimizer` should be a torch.optim optimizer, got {type(optimizer).__name__}.")
    groups = optimizer.param_groups
    if len(groups) != len(lrs):
        return report(False, "", f"expected {len(lrs)} parameter groups (one per stage), got {len(groups)}.")
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    in_opt = {id(p) for g in groups for p in g["params"]}
    if in_opt - trainable:
        return report(False, "", "the optimizer holds frozen parameters: freeze everything except layer4 and fc, "
                                 "and give the optimizer only those.")
    if trainable - in_opt:
        return report(False, "", "some trainable parameters are not in the optimizer: they would never be updated.")
    for stage, lr in lrs.items():
        ids = {id(p) for p in model.get_submodule(stage).parameters()}
        match = [g for g in groups if {id(p) for p in g["params"]} == ids]
        if not match:
            return report(False, "", f"no parameter group holds exactly the parameters of `model.{stage}`.")
        if not np.isclose(match[0]["lr"], lr):
            return report(False, "", f"the {stage} group has lr={match[0]['lr']:g}, expected {lr:g}.")
    per = ", ".join(f"{s} at {lr:g}" for s, lr in lrs.items())
    return report(True, f"two groups, {per}, and only trainable parameters.", "")


def check_recall(recall, labels, preds, cls: int = 1, tol: float = 1e-6) -> bool:
    """Exercise 3: the recall of class ``cls`` (share of its true images predicted as it) from labels and predictions."""
    if recall is None:
        return report(False, "", "set `recall` to (dogs predicted as dog) / (all true dogs): one row of the confusion matrix.")
    y, p = torch.as_tensor(labels).long(), torch.as_tensor(preds).long()
    true = y == cls
    expected = ((p == cls) & true).sum().item() / max(int(true.sum()), 1)
    value = float(recall)
    if abs(value - expected) <= tol:
        return report(True, f"recall {expected:.3f}: the model finds {expected:.1%} of the true images of this class.", "")
    precision = ((p == cls) & true).sum().item() / max(int((p == cls).sum()), 1)
    if abs(value - precision) <= tol:
        return report(False, "", "that is the precision (divided by the predicted column); recall divides by the true row.")
    if abs(value - 100 * expected) <= 100 * tol:
        return report(False, "", "right value but in percent: give a fraction between 0 and 1.")
    return report(False, "", "recall = correct predictions of the class / number of true images of the class.")
