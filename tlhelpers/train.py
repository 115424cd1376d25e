"""Training and evaluation loops with a tqdm progress bar, and head training on cached features."""
from __future__ import annotations

import os
import random
import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .device import autocast, model_device

__all__ = ["set_seed", "fit", "evaluate", "predict", "fit_head", "quick_mode"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def quick_mode() -> bool:
    """True when ``$TLHELPERS_QUICK`` is set to 1/true/yes: notebooks shrink data and epochs (used by CI)."""
    return os.environ.get("TLHELPERS_QUICK", "").lower() in ("1", "true", "yes")


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch; on CPU a seeded run is then repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prepare(x: torch.Tensor, device: torch.device, transform: Transform | None) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if transform is not None:
        x = transform(x)
    elif x.dtype == torch.uint8:
        x = x.float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None = None, epochs: int = 1,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3, transform: Transform | None = None,
        augment: Transform | None = None, scheduler=None, criterion: nn.Module | None = None, amp: bool = True,
        progress: bool = True) -> list[dict]:
    """Train ``model`` for ``epochs``; return the history, one dict per epoch.

    ``transform`` is the preprocessing that goes with the weights (applied to each batch on the
    model's device); ``augment`` runs before it on training batches only. Without ``optimizer``,
    Adam at ``lr`` over the trainable parameters. ``scheduler.step()`` runs after every batch (a
    per-step schedule such as OneCycleLR; scale an epoch-based one by ``len(train_loader)``).
    ``amp`` uses bfloat16 autocast where the hardware runs it natively (CUDA from Ampere on, CPUs
    with AVX512-BF16/AMX). The bar shows running loss and accuracy.
    """
    device = model_device(model)
    criterion = criterion or nn.CrossEntropyLoss()
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("The model has no trainable parameters: unfreeze at least the head.")
        optimizer = torch.optim.Adam(params, lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"Epoch {epoch}/{epochs}", disable=not progress, leave=True)
        for x, y in bar:
            y = y.to(device, non_blocking=True)
            x = x.to(device, non_blocking=True)
            if augment is not None:
                x = augment(x)
            x = _prepare(x, device, transform)
            with autocast(device, enabled=amp):
                logits = model(x)
            loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            n = y.shape[0]
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == y).sum().item()
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
        rec = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}
        if val_loader is not None:
            ev = evaluate(model, val_loader, transform=transform, amp=amp)
            rec.update(val_loss=ev["loss"], val_acc=ev["acc"])
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        if progress:
            bar.set_postfix(loss=f"{rec['train_loss']:.4f}", acc=f"{rec['train_acc']:.2%}",
                            **({"val_acc": f"{rec['val_acc']:.2%}"} if "val_acc" in rec else {}))
            bar.close()
    return history


@torch.inference_mode()
def predict(model: nn.Module, loader: DataLoader, transform: Transform | None = None,
            amp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits for every batch of ``loader`` and the true labels: (N x K float32, N)."""
    device = model_device(model)
    model.eval()
    logits, labels = [], []
    for x, y in loader:
        with autocast(device, enabled=amp):
            out = model(_prepare(x, device, transform))
        logits.append(out.float().cpu())
        labels.append(torch.as_tensor(y).cpu())
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, loader: DataLoader, transform: Transform | None = None, amp: bool = True) -> dict:
    """Loss, accuracy, predictions and labels of ``model`` on ``loader`` (eval mode, no gradients)."""
    logits, labels = predict(model, loader, transform, amp)
    preds = logits.argmax(1)
    return {"loss": F.cross_entropy(logits, labels).item(), "acc": (preds == labels).float().mean().item(),
            "preds": preds, "labels": labels}


def fit_head(train_features: torch.Tensor, train_labels: torch.Tensor, num_classes: int | None = None,
             val_features: torch.Tensor | None = None, val_labels: torch.Tensor | None = None, epochs: int = 10,
             lr: float = 1e-3, batch_size: int = 32, weight_decay: float = 0.0, seed: int = 0,
             head: nn.Linear | None = None, progress: bool = True) -> tuple[nn.Linear, list[dict]]:
    """Train a linear head on cached (frozen-backbone) features: feature extraction without re-running the backbone.

    Equivalent to training ``model.fc`` with the backbone frozen and in eval mode, without
    augmentation, but each epoch costs microseconds instead of a backbone forward pass.
    Returns the head (assign it as ``model.fc``) and the per-epoch history.
    """
    train_features, train_labels = torch.as_tensor(train_features).float(), torch.as_tensor(train_labels).long()
    k = num_classes or int(train_labels.max()) + 1
    g = torch.Generator().manual_seed(seed)
    if head is None:
        torch.manual_seed(seed)
        head = nn.Linear(train_features.shape[1], k)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    bar = tqdm(range(1, epochs + 1), desc="Head epochs", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        head.train()
        perm = torch.randperm(len(train_labels), generator=g)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            logits = head(train_features[idx])
            loss = F.cross_entropy(logits, train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == train_labels[idx]).sum().item()
        rec = {"epoch": epoch, "train_loss": loss_sum / len(perm), "train_acc": correct / len(perm)}
        if val_features is not None:
            with torch.no_grad():
                head.eval()
                vl = head(torch.as_tensor(val_features).float())
                vy = torch.as_tensor(val_labels).long()
                rec.update(val_loss=F.cross_entropy(vl, vy).item(), val_acc=(vl.argmax(1) == vy).float().mean().item())
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        bar.set_postfix(loss=f"{rec['train_loss']:.4f}", acc=f"{rec['train_acc']:.2%}",
                        **({"val_acc": f"{rec['val_acc']:.2%}"} if "val_acc" in rec else {}))
    return head, history
