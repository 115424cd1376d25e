"""Fine-tuning on your own data: a learning-rate finder and a two-phase recipe (head first, then the top stages).

These are what fastai's ``lr_find`` and ``fine_tune`` give, as plain functions over :func:`tlhelpers.fit`.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .batch import prepare_batch
from .device import autocast, model_device
from .freeze import make_optimizer, set_trainable
from .train import best_epoch, fit, is_better

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
    device = model_device(model)
    saved, was_training = copy.deepcopy(model.state_dict()), model.training
    opt = make_optimizer(model, "adam", lr=start_lr)
    gamma = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    model.train()
    try:
        batches = iter(loader)
        for step in range(steps):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            lr = start_lr * gamma**step
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = x.to(device), y.to(device)
            x = prepare_batch(augment(x) if augment is not None else x, device, transform)
            with autocast(device, enabled=amp):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            avg = 0.8 * avg + 0.2 * loss.item()
            smooth = avg / (1 - 0.8 ** (step + 1))  # bias-corrected running mean
            if not math.isfinite(smooth):
                break
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            if step >= 5 and smooth > 4 * best:
                break
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    at_min = lrs[min(range(len(losses)), key=losses.__getitem__)]
    return {"lrs": lrs, "losses": losses, "suggested": max(at_min / 10, start_lr)}


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
    Returns both phases' history (``"phase": 1 or 2``, epochs numbered on); the chosen epoch has ``"best"``.
    """
    common = dict(transform=transform, augment=augment, keep_best=True, monitor="val_acc", progress=progress)
    if progress:
        print(f"Phase 1: the head alone, backbone frozen, up to lr {lr:.1e}")
    set_trainable(model, ("fc",))
    opt = make_optimizer(model, "adam", lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, head_epochs * len(train_loader)))
    first = fit(model, train_loader, val_loader, head_epochs, opt, scheduler=sched, **common)
    best_first, state_first = best_epoch(first), copy.deepcopy(model.state_dict())

    stage_lrs = {"fc": lr / 2}
    for i, stage in enumerate(reversed(list(unfreeze))):
        stage_lrs[stage] = lr / 2 / lr_mult ** (i + 1)
    if progress:
        print("Phase 2: " + ", ".join(f"{s} up to lr {v:.1e}" for s, v in stage_lrs.items()))
    set_trainable(model, list(unfreeze) + ["fc"])
    opt = make_optimizer(model, "adam", lr=lr / 2, stage_lrs=stage_lrs)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(1, epochs * len(train_loader))
    )
    second = fit(model, train_loader, val_loader, epochs, opt, scheduler=sched, **common) if epochs else []
    for h in first:
        h["phase"] = 1
    for h in second:
        h["phase"], h["epoch"] = 2, h["epoch"] + len(first)
    if second and is_better(best_epoch(second), best_first, "val_acc"):
        best_first.pop("best", None)
        if progress:
            print(f"Kept epoch {best_epoch(second)['epoch']} (phase 2) of the {len(first) + len(second)}.")
    else:  # phase 2 never beat the head alone: keep phase 1's weights
        for h in second:
            h.pop("best", None)
        model.load_state_dict(state_first)
        if second and progress:
            print(f"Phase 2 did not beat phase 1 on validation: kept epoch {best_first['epoch']} (phase 1).")
    return first + second
