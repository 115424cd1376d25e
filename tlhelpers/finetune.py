"""Fine-tuning on your own data: a learning-rate finder and a two-phase recipe (head first, then the top stages).

These are what fastai's ``lr_find`` and ``fine_tune`` give, as plain functions over :func:`tlhelpers.fit`.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .device import model_device
from .freeze import make_optimizer, set_trainable
from .train import _whole, best_epoch, fit, is_better, model_loss, on_device, train_steps

__all__ = ["lr_find", "fine_tune"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def lr_find(
    model: nn.Module,
    loader: DataLoader,
    transform: Transform | None = None,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    steps: int = 60,
    augment: Transform | None = None,
    amp: bool = True,
) -> dict:
    """Loss against learning rate (Smith's range test) for the model's *trainable* parameters.

    One Adam step per batch with the rate growing geometrically from ``start_lr`` to ``end_lr``; it stops
    early once the smoothed loss is 4x its minimum. The weights (and BatchNorm statistics) are restored
    afterwards. Returns ``{"lrs", "losses" (smoothed), "suggested"}``: the suggested rate is a tenth of the
    rate at the lowest smoothed loss, a common rule of thumb (the loss still falls fast there).
    """
    if steps < 5 or not 0 < start_lr < end_lr:
        raise ValueError(f"need steps >= 5 and 0 < start_lr < end_lr, got {steps}, {start_lr}, {end_lr}.")
    if len(loader) == 0:
        raise ValueError("The loader yielded no batches: the training set is empty.")
    saved, was_training = copy.deepcopy(model.state_dict()), model.training
    opt = make_optimizer(model, "adam", lr=start_lr)
    gamma = (end_lr / start_lr) ** (1 / (steps - 1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: gamma**step)  # start_lr * gamma**step
    lrs, losses, avg, best = [], [], 0.0, math.inf

    def on_step(step: int, loss: float) -> bool:
        """Record the smoothed loss at this step's rate; True (stop) once it diverges."""
        nonlocal avg, best
        avg = 0.8 * avg + 0.2 * loss
        smooth = avg / (1 - 0.8 ** (step + 1))  # bias-corrected running mean
        if not math.isfinite(smooth):
            return True
        lrs.append(start_lr * gamma**step)
        losses.append(smooth)
        best = min(best, smooth)
        return step >= 5 and smooth > 4 * best

    model.train()
    try:
        batches = on_device(_cycle(loader, steps), model_device(model))
        train_steps(batches, model_loss(model, transform, augment, amp), opt, sched, on_step)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    at_min = lrs[min(range(len(losses)), key=losses.__getitem__)]
    return {"lrs": lrs, "losses": losses, "suggested": max(at_min / 10, start_lr)}


def _cycle(loader: DataLoader, steps: int) -> Iterator:
    """``steps`` batches of ``loader``, starting it again as often as needed."""
    n = 0
    while True:
        for batch in loader:
            yield batch
            n += 1
            if n == steps:
                return


def fine_tune(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    lr: float,
    transform: Transform | None = None,
    head_epochs: int = 2,
    epochs: int = 6,
    unfreeze: Sequence[str] = ("layer4",),
    lr_mult: float = 10.0,
    augment: Transform | None = None,
    progress: bool = True,
) -> list[dict]:
    """Two-phase fine-tuning with one-cycle schedules, keeping the best epoch by validation accuracy.

    Phase 1 trains the head alone (backbone frozen, BatchNorm statistics kept) at ``lr`` for ``head_epochs``.
    Phase 2 unfreezes ``unfreeze`` (stages in network order) with discriminative rates: the head at
    ``lr / 2``, the last unfrozen stage ``lr_mult`` times lower, each earlier stage ``lr_mult`` times lower
    again, for ``epochs``. The model ends with the weights of the best validation epoch of either phase
    (highest accuracy; a tie goes to the lower validation loss).
    ``head_epochs=0`` skips phase 1; ``epochs=0`` skips phase 2. The log numbers epochs one way: "phase 2,
    epoch 2 of 6 (epoch 5 overall)". Returns both phases' history (``"phase": 1 or 2``, ``"epoch"`` counted
    over both); the chosen epoch has ``"best"``.
    """
    head_epochs, epochs = _whole("head_epochs", head_epochs, 0), _whole("epochs", epochs, 0)
    if head_epochs + epochs == 0:
        raise ValueError("head_epochs and epochs are both 0: nothing to train; give at least one epoch.")
    common = dict(transform=transform, augment=augment, keep_best=True, monitor="val_acc", progress=progress)
    first: list[dict] = []
    if head_epochs:
        if progress:
            print(f"Phase 1: the head alone, backbone frozen, up to lr {lr:.1e}")
        set_trainable(model, ("head",))
        opt = make_optimizer(model, "adam", lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, head_epochs * len(train_loader)))
        first = fit(model, train_loader, val_loader, head_epochs, opt, scheduler=sched, desc="phase 1", **common)
        for h in first:
            h["phase"] = 1
        best_first, state_first = best_epoch(first), copy.deepcopy(model.state_dict())

    stage_lrs = {"head": lr / 2}
    for i, stage in enumerate(reversed(list(unfreeze))):
        stage_lrs[stage] = lr / 2 / lr_mult ** (i + 1)
    second: list[dict] = []
    if epochs:
        if progress:
            print("Phase 2: " + ", ".join(f"{s} up to lr {v:.1e}" for s, v in stage_lrs.items()))
        set_trainable(model, list(unfreeze) + ["head"])
        opt = make_optimizer(model, "adam", lr=lr / 2, stage_lrs=stage_lrs)
        max_lr = [g["lr"] for g in opt.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(1, epochs * len(train_loader)))
        second = fit(
            model, train_loader, val_loader, epochs, opt, scheduler=sched, desc="phase 2",
            first_epoch=len(first) + 1, **common,
        )  # fmt: skip
        for h in second:
            h["phase"] = 2
    if not first:
        return second
    if second and is_better(best_epoch(second), best_first, "val_acc"):
        best_first.pop("best", None)
        if progress:
            print(f"Kept {_label(best_epoch(second), len(first), epochs)}: it beat phase 1 on validation.")
    else:  # phase 2 never beat the head alone (or did not run): keep phase 1's weights
        for h in second:
            h.pop("best", None)
        model.load_state_dict(state_first)
        if second and progress:
            print(f"Phase 2 did not beat phase 1 on validation: kept {_label(best_first, 0, head_epochs)}.")
    return first + second


def _label(rec: dict, before: int, epochs: int) -> str:
    """An epoch of :func:`fine_tune` in its one numbering: ``phase 2, epoch 2 of 6 (epoch 5 overall)``."""
    text = f"phase {rec['phase']}, epoch {rec['epoch'] - before} of {epochs}"
    return text + (f" (epoch {rec['epoch']} overall)" if before else "")
