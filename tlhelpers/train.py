"""Training and evaluation loops with a tqdm progress bar, and head training on cached features."""

from __future__ import annotations

import copy
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import IMG_EXTENSIONS, decode_files, image_files_below, prepare_batch
from .device import autocast, model_device
from .models import head_of
from .settings import quick_mode

__all__ = [
    "set_seed",
    "fit",
    "best_epoch",
    "is_better",
    "evaluate",
    "predict",
    "predict_files",
    "fit_head",
    "quick_mode",
]

Transform = Callable[[torch.Tensor], torch.Tensor]


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch; on CPU a seeded run is then repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_better(rec: dict, best: dict | None, monitor: str) -> bool:
    """Strictly better on ``monitor``; for accuracy (coarse on a small set), a tie goes to the lower loss."""
    if best is None:
        return True
    if monitor.endswith("loss"):
        return rec[monitor] < best[monitor]
    return rec[monitor] > best[monitor] or (rec[monitor] == best[monitor] and rec["val_loss"] < best["val_loss"])


def _check_selection(has_val: bool, keep_best: bool, patience: int | None, monitor: str) -> None:
    if (keep_best or patience is not None) and not has_val:
        raise ValueError("keep_best and patience select an epoch on validation data: pass a validation set.")
    if monitor not in ("val_loss", "val_acc"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_acc', got {monitor!r}.")
    if patience is not None and (isinstance(patience, bool) or int(patience) != patience or patience < 1):
        raise ValueError(f"patience must be a whole number of epochs >= 1 (or None), got {patience!r}.")


class _Selection:
    """Epoch selection on validation, shared by :func:`fit` and :func:`fit_head`: the best record so far, its
    weights (``keep_best``), and the count of epochs without a better one (``patience``)."""

    def __init__(self, module: nn.Module, keep_best: bool, patience: int | None, monitor: str) -> None:
        self.module, self.keep_best, self.patience, self.monitor = module, keep_best, patience, monitor
        self.best, self.state, self.waited = None, None, 0

    def stop_after(self, rec: dict) -> bool:
        """Record one epoch; True when ``patience`` epochs have passed without a better ``monitor``."""
        if not (self.keep_best or self.patience is not None):
            return False
        if is_better(rec, self.best, self.monitor):
            self.best, self.waited = rec, 0
            if self.keep_best:
                self.state = copy.deepcopy(self.module.state_dict())
            return False
        self.waited += 1
        return self.patience is not None and self.waited >= self.patience

    def finish(self, history: list[dict]) -> dict | None:
        """Mark the chosen epoch ``"best": True``; with ``keep_best``, put its weights back if a later epoch
        changed them, and return its record (None when nothing was restored)."""
        if self.best is None:
            return None
        self.best["best"] = True
        if self.keep_best and self.best is not history[-1]:
            self.module.load_state_dict(self.state)
            return self.best
        return None


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    epochs: int = 1,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    transform: Transform | None = None,
    augment: Transform | None = None,
    scheduler=None,
    criterion: nn.Module | None = None,
    amp: bool = True,
    progress: bool = True,
    keep_best: bool = False,
    patience: int | None = None,
    monitor: str = "val_loss",
) -> list[dict]:
    """Train ``model`` for up to ``epochs``; return the history, one dict per epoch.

    ``val_loader`` is the **validation** set (never the test set): each epoch records ``val_loss`` and
    ``val_acc`` on it. ``keep_best`` restores, at the end, the weights of the epoch with the best
    ``monitor`` (lowest ``val_loss`` by default; ``"val_acc"``: highest); ``patience`` stops early after
    that many epochs without a better one. The chosen epoch's record has ``"best": True``.

    ``transform`` is the preprocessing that goes with the weights (applied to each batch on the
    model's device); ``augment`` runs before it on training batches only. Without ``optimizer``,
    Adam at ``lr`` over the trainable parameters. ``scheduler.step()`` runs after every batch (a
    per-step schedule such as OneCycleLR; scale an epoch-based one by ``len(train_loader)``).
    ``amp`` uses bfloat16 autocast where the hardware runs it natively (CUDA from Ampere on, CPUs
    with AVX512-BF16/AMX). The bar shows running loss and accuracy.
    """
    _check_selection(val_loader is not None, keep_best, patience, monitor)
    device = model_device(model)
    criterion = criterion or nn.CrossEntropyLoss()
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("The model has no trainable parameters: unfreeze at least the head.")
        optimizer = torch.optim.Adam(params, lr=lr)
    history: list[dict] = []
    selection = _Selection(model, keep_best, patience, monitor)
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
            x = prepare_batch(x, device, transform)
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
        if seen == 0:
            raise ValueError("The training loader yielded no batches: the training set is empty.")
        rec = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen}
        if val_loader is not None:
            ev = evaluate(model, val_loader, transform=transform, amp=amp)
            rec.update(val_loss=ev["loss"], val_acc=ev["acc"])
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        if progress:
            bar.set_postfix(
                loss=f"{rec['train_loss']:.4f}",
                acc=f"{rec['train_acc']:.2%}",
                **({"val_acc": f"{rec['val_acc']:.2%}"} if "val_acc" in rec else {}),
            )
            bar.close()
        if selection.stop_after(rec):
            if progress and epoch < epochs:  # on the last allowed epoch the run ends anyway: not early
                print(f"Early stopping after epoch {epoch}: no better {monitor} for {patience} epoch(s).")
            break
    restored = selection.finish(history)
    if restored is not None and progress:
        print(
            f"Kept the weights of epoch {restored['epoch']} of {len(history)} (best {monitor} {restored[monitor]:.4f})."
        )
    return history


def best_epoch(history: list[dict]) -> dict:
    """The record of the epoch ``fit``/``fit_head`` selected (``"best": True``), else the last one."""
    if not history:
        raise ValueError("The history is empty: nothing was trained.")
    return next((h for h in history if h.get("best")), history[-1])


@torch.inference_mode()
def predict(
    model: nn.Module, loader: DataLoader, transform: Transform | None = None, amp: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits for every batch of ``loader`` and the true labels: (N x K float32, N)."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in loader:
            with autocast(device, enabled=amp):
                out = model(prepare_batch(x, device, transform))
            logits.append(out.float().cpu())
            labels.append(torch.as_tensor(y).cpu())
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("The loader yielded no batches: nothing to predict (the dataset is empty).")
    return torch.cat(logits), torch.cat(labels)


def _image_files(files: str | os.PathLike | list) -> list[str]:
    """A file, a folder (its image files, sub-folders included, hidden ones skipped) or a list, as paths."""
    if isinstance(files, (str, os.PathLike)):
        p = Path(files).expanduser()
        if p.is_dir():
            found = image_files_below(p)
            if not found:
                raise FileNotFoundError(f"No image files in {p} (extensions {', '.join(IMG_EXTENSIONS)}).")
            return sorted(found)
        files = [p]
    paths = [str(Path(f).expanduser()) for f in files]
    for f in paths:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"Image file not found: {f}")
    return paths


@torch.inference_mode()
def predict_files(
    model: nn.Module,
    files: str | os.PathLike | list,
    preprocess: Transform,
    classes: list[str] | tuple[str, ...],
    k: int = 3,
    batch_size: int = 32,
    amp: bool = True,
) -> list[dict]:
    """Top-``k`` classes with probabilities for image files: ``[{"file": path, "top": [(class, p), ...]}, ...]``.

    ``files`` is one file, a folder or a list. Any size, format and mode Pillow reads is decoded to RGB,
    upright (EXIF), straight to ``preprocess``'s resize size, ``batch_size`` files at a time.
    """
    paths = _image_files(files)
    size = int(preprocess.resize_size[0])
    outputs = head_of(model)[1].out_features
    if len(classes) != outputs:
        raise ValueError(f"{len(classes)} class names for a model with {outputs} outputs: pass the model's classes.")
    device = model_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(paths), batch_size):
            chunk = paths[i : i + batch_size]
            with autocast(device, enabled=amp):
                logits = model(prepare_batch(decode_files(chunk, size), device, preprocess))
            probs = logits.float().softmax(1).cpu()
            top = probs.topk(min(k, probs.shape[1]), dim=1)
            for f, v, j in zip(chunk, top.values.tolist(), top.indices.tolist()):
                out.append({"file": f, "top": [(classes[c], p) for c, p in zip(j, v)]})
    finally:
        model.train(was_training)
    return out


def evaluate(model: nn.Module, loader: DataLoader, transform: Transform | None = None, amp: bool = True) -> dict:
    """Loss, accuracy, predictions and labels of ``model`` on ``loader`` (eval mode, no gradients)."""
    logits, labels = predict(model, loader, transform, amp)
    preds = logits.argmax(1)
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "acc": (preds == labels).float().mean().item(),
        "preds": preds,
        "labels": labels,
    }


def fit_head(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int | None = None,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 0.0,
    seed: int = 0,
    head: nn.Linear | None = None,
    progress: bool = True,
    keep_best: bool = False,
    patience: int | None = None,
    monitor: str = "val_loss",
) -> tuple[nn.Linear, list[dict]]:
    """Train a linear head on cached (frozen-backbone) features: feature extraction without re-running the backbone.

    Equivalent to training ``model.fc`` with the backbone frozen and in eval mode, without
    augmentation, but each epoch costs microseconds instead of a backbone forward pass.
    ``val_features``/``val_labels`` are the validation set; ``keep_best``, ``patience`` and ``monitor``
    select an epoch on it as in :func:`fit`. The caller's random state is left as it was.
    Returns the head (assign it as ``model.fc``) and the per-epoch history.
    """
    train_features, train_labels = torch.as_tensor(train_features).float(), torch.as_tensor(train_labels).long()
    if len(train_labels) == 0 or len(train_features) != len(train_labels):
        raise ValueError(
            f"fit_head needs as many labels as feature rows, at least one: got {len(train_features)} "
            f"feature rows and {len(train_labels)} labels."
        )
    has_val = val_features is not None and val_labels is not None
    _check_selection(has_val, keep_best, patience, monitor)
    k = num_classes or int(train_labels.max()) + 1
    g = torch.Generator().manual_seed(seed)
    if head is None:
        with torch.random.fork_rng(devices=[]):  # a reproducible head without resetting the caller's random state
            torch.manual_seed(seed)
            head = nn.Linear(train_features.shape[1], k)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    if has_val:
        vx, vy = torch.as_tensor(val_features).float(), torch.as_tensor(val_labels).long()
    history: list[dict] = []
    selection = _Selection(head, keep_best, patience, monitor)
    bar = tqdm(range(1, epochs + 1), desc="Head epochs", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        head.train()
        perm = torch.randperm(len(train_labels), generator=g)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            logits = head(train_features[idx])
            loss = F.cross_entropy(logits, train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == train_labels[idx]).sum().item()
        rec = {"epoch": epoch, "train_loss": loss_sum / len(perm), "train_acc": correct / len(perm)}
        if has_val:
            with torch.no_grad():
                head.eval()
                vl = head(vx)
                rec.update(val_loss=F.cross_entropy(vl, vy).item(), val_acc=(vl.argmax(1) == vy).float().mean().item())
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        bar.set_postfix(
            loss=f"{rec['train_loss']:.4f}",
            acc=f"{rec['train_acc']:.2%}",
            **({"val_acc": f"{rec['val_acc']:.2%}"} if "val_acc" in rec else {}),
        )
        if selection.stop_after(rec):
            break
    bar.close()
    selection.finish(history)
    return head, history
