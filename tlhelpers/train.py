"""Training and evaluation: one loop of optimisation steps (:func:`train_steps`), the epoch loop that
:func:`fit` and :func:`fit_head` share, and evaluation with per-class recall.

The loop is plain functions with a hook, after fastai's ``schedule.py``: :func:`train_steps` runs forward,
backward and step over any batches and calls ``on_step`` after each step (``lr_find`` stops there);
``pretrain`` and ``lr_find`` call it directly; ``fit`` (batches from a loader through the backbone) and
``fit_head`` (batches of cached features) run it once per epoch through :func:`_epochs`.
"""

from __future__ import annotations

import copy
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .augment import random_flip
from .batch import prepare_batch
from .data import _unreadable_error, _walk
from .decode import IMG_EXTENSIONS, _decode_all
from .device import autocast, model_device, optimizer_options
from .models import head_of
from .recipe import Recipe
from .recipe import recipe as recipe_of
from .settings import quick_mode
from .stats import require_not_test

__all__ = [
    "set_seed",
    "train_steps",
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
LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch.

    A seeded CPU run is then repeatable on the same machine *at the same thread count*
    (``torch.get_num_threads()``): with another count, sums are split differently and the weights drift
    apart by rounding (docs/reproducibility.md gives the measured size).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- the one loop of optimisation steps


def train_steps(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_of: LossFn,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    on_step: Callable[[int, float], bool | None] | None = None,
    bar=None,
) -> dict:
    """Forward, backward and step for each ``(x, y)`` of ``batches``; return ``{"train_loss", "train_acc",
    "steps", "stopped"}`` (loss and accuracy averaged over the examples seen).

    ``loss_of(x, y)`` returns ``(loss, logits)``. ``scheduler.step()`` runs after every step (a per-step
    schedule such as OneCycleLR). ``on_step(step, loss)`` runs after each step; when it returns True the
    pass stops there. ``bar`` (a tqdm bar) shows the running loss and accuracy. The caller sets train mode.
    """
    loss_sum, correct, seen, step, stopped = 0.0, 0, 0, 0, False
    for step, (x, y) in enumerate(batches, 1):
        loss, logits = loss_of(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        value, n = loss.item(), y.shape[0]
        loss_sum += value * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        if bar is not None:
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
        if on_step is not None and on_step(step - 1, value):
            stopped = True
            break
    if seen == 0:
        raise ValueError("The training loader yielded no batches: the training set is empty.")
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "steps": step, "stopped": stopped}


def model_loss(
    model: nn.Module,
    transform: Transform | None = None,
    augment: Transform | None = None,
    amp: bool = True,
    criterion: Callable | None = None,
) -> LossFn:
    """``loss_of(x, y)`` for :func:`train_steps` through ``model``: ``augment`` (training only), then the
    weights' ``transform`` on the model's device, bfloat16 autocast where native, the loss in float32."""
    device = model_device(model)
    criterion = criterion or F.cross_entropy

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        x = prepare_batch(x, device, transform)
        with autocast(device, enabled=amp):
            logits = model(x)
        return criterion(logits.float(), y), logits

    return loss_of


def on_device(batches: Iterable, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` pairs with the labels moved to ``device`` (images move in ``loss_of``, after augmentation)."""
    for x, y in batches:
        yield x, torch.as_tensor(y).to(device, non_blocking=True)


def index_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of ``n`` examples in a fresh random order, ``batch_size`` at a time (tensor-held data)."""
    perm = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


# ---------------------------------------------------------------- epochs, selection, the log


def is_better(rec: dict, best: dict | None, monitor: str) -> bool:
    """Strictly better on ``monitor``; for accuracy (coarse on a small set), a tie goes to the lower loss."""
    if best is None:
        return True
    if monitor.endswith("loss"):
        return rec[monitor] < best[monitor]
    return rec[monitor] > best[monitor] or (rec[monitor] == best[monitor] and rec["val_loss"] < best["val_loss"])


def _whole(name: str, value, least: int) -> int:
    """``value`` as a whole number >= ``least``, or one error naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}.")
    return int(value)


def _check_selection(
    has_val: bool, keep_best: bool, patience: int | None, monitor: str, val_split: str = "validation", data=None
) -> None:
    """Refuse a selection (``keep_best``, ``patience``) that has no validation set, or whose validation set is
    named test: ``val_split``, or the ``split`` attribute of the data when it carries one (as ``stats`` does)."""
    selects = keep_best or patience is not None
    if selects and not has_val:
        raise ValueError("keep_best and patience select an epoch on validation data: pass a validation set.")
    if selects:
        named = getattr(data, "split", None)
        for split in (val_split, *([named] if isinstance(named, str) else [])):
            try:
                require_not_test(split)
            except ValueError as e:
                raise ValueError(f"keep_best and patience select an epoch on the validation set. {e}") from None
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
        """Mark the chosen epoch ``"best": True``. With ``keep_best``, when a later epoch changed its weights,
        put them back and return its record; None otherwise (no selection, or the last epoch was the best)."""
        if self.best is None:
            return None
        self.best["best"] = True
        if self.keep_best and self.best is not history[-1]:
            self.module.load_state_dict(self.state)
            return self.best
        return None


class _Log:
    """The progress bars of one run, labelled ``desc``: one bar per epoch over its batches (``fit``) or one
    bar over the epochs (``fit_head``). An early stop closes the bar full, saying so, never part-filled."""

    def __init__(self, desc: str, epochs: int, first: int, enabled: bool, per_epoch: bool) -> None:
        self.desc, self.epochs, self.first, self.enabled, self.per_epoch = desc, epochs, first, enabled, per_epoch
        self.bar = None if per_epoch else tqdm(total=epochs, desc=desc, disable=not enabled)

    def label(self, epoch: int) -> str:
        """``"<desc>, epoch i of n"``, with ``"(epoch k overall)"`` when the run continues another."""
        i = epoch - self.first + 1
        text = f"{self.desc}, epoch {i} of {self.epochs}" if self.desc else f"epoch {i} of {self.epochs}"
        return text + (f" (epoch {epoch} overall)" if self.first > 1 else "")

    def batches(self, epoch: int, loader: Iterable) -> Iterable:
        """The loader, wrapped in this epoch's bar when there is one bar per epoch."""
        if not self.per_epoch:
            return loader
        self.bar = tqdm(loader, desc=self.label(epoch), disable=not self.enabled, leave=True)
        return self.bar

    @property
    def step_bar(self):
        """The bar that shows running loss and accuracy per step (only a per-epoch bar does)."""
        return self.bar if self.per_epoch and self.enabled else None

    def end_epoch(self, rec: dict, stop: bool) -> None:
        if not self.per_epoch:
            self.bar.update(1)
        val = {"val_acc": f"{rec['val_acc']:.2%}"} if "val_acc" in rec else {}
        self.bar.set_postfix(loss=f"{rec['train_loss']:.4f}", acc=f"{rec['train_acc']:.2%}", **val)
        stop = stop and rec["epoch"] - self.first + 1 < self.epochs  # the last epoch ends the run anyway
        if stop:
            i = rec["epoch"] - self.first + 1
            self.bar.total = self.bar.n  # a full bar: the run ended here on purpose
            self.bar.set_description(f"{self.desc or 'training'}: stopped early after epoch {i} of {self.epochs}")
        if self.per_epoch or stop:
            self.bar.close()

    def end(self) -> None:
        if not self.per_epoch:
            self.bar.close()


def _epochs(
    epochs: int,
    one_epoch: Callable[[int], dict],
    validate: Callable[[], dict] | None,
    selection: _Selection,
    log: _Log,
) -> list[dict]:
    """The epoch loop of :func:`fit` and :func:`fit_head`: train, validate, record, select, stop early."""
    history: list[dict] = []
    try:
        for epoch in range(log.first, log.first + epochs):
            t0 = time.perf_counter()
            rec = {"epoch": epoch, **one_epoch(epoch)}
            if validate is not None:
                rec.update(validate())
            rec["seconds"] = time.perf_counter() - t0
            history.append(rec)
            stop = selection.stop_after(rec)
            log.end_epoch(rec, stop)
            if stop:
                break
    finally:
        log.end()
    return history


def _pick(value, from_recipe, default):
    """An argument given explicitly, else the recipe's value, else the default."""
    return value if value is not None else from_recipe if from_recipe is not None else default


def _as_recipe(recipe: Recipe | str | None) -> Recipe | None:
    return recipe_of(recipe) if isinstance(recipe, str) else recipe


# ---------------------------------------------------------------- fit: batches through the backbone


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    epochs: int = 1,
    optimizer: torch.optim.Optimizer | None = None,
    recipe: Recipe | str | None = None,
    *,
    transform: Transform | None = None,
    augment: Transform | None = None,
    lr: float | None = None,
    keep_best: bool | None = None,
    patience: int | None = None,
    monitor: str = "val_loss",
    val_split: str = "validation",
    scheduler=None,
    amp: bool = True,
    progress: bool = True,
    desc: str = "",
    first_epoch: int = 1,
) -> list[dict]:
    """Train ``model`` for up to ``epochs``; return the history, one dict per epoch.

    ``recipe`` (a :class:`~tlhelpers.recipe.Recipe` or a strategy name) gives the settings at once: without
    ``optimizer``, ``recipe.apply(model)`` (its trainable stages at its rates); its flip augmentation; with a
    validation set, keep_best and its ``patience``. Any of them given here wins. Without a recipe or
    optimizer: Adam at ``lr`` (default 1e-3) over the trainable parameters, no selection.

    ``val_loader`` is the **validation** set (never the test set): each epoch records ``val_loss`` and
    ``val_acc`` on it. ``keep_best`` restores, at the end, the weights of the epoch with the best
    ``monitor`` (lowest ``val_loss`` by default; ``"val_acc"``: highest); ``patience`` stops early after
    that many epochs without a better one. The chosen epoch's record has ``"best": True``. ``val_split``
    names that set; a selection on a split named test is refused (as ``stats.require_not_test`` does), and so
    is one on a loader whose dataset has a ``split`` attribute naming test.

    ``transform`` is the preprocessing that goes with the weights (applied to each batch on the
    model's device); ``augment`` runs before it on training batches only. ``scheduler.step()`` runs
    after every batch (a per-step schedule such as OneCycleLR). ``amp`` uses bfloat16 autocast where
    the hardware runs it natively. The bars are labelled ``desc`` and show running loss and accuracy;
    ``first_epoch`` numbers the epochs on from another run (``fine_tune``'s second phase).
    """
    r = _as_recipe(recipe)
    epochs = _whole("epochs", epochs, 1)
    keep_best = (r is not None and val_loader is not None) if keep_best is None else keep_best
    patience = patience if patience is not None else (r.patience if r is not None and val_loader else None)
    if augment is None and r is not None and r.augment == "flip":
        augment = random_flip
    _check_selection(
        val_loader is not None, keep_best, patience, monitor, val_split, getattr(val_loader, "dataset", None)
    )
    if optimizer is None and r is not None:
        optimizer = r.apply(model)
    elif optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("The model has no trainable parameters: unfreeze at least the head.")
        optimizer = torch.optim.Adam(params, lr=_pick(lr, None, 1e-3), **optimizer_options(model_device(model)))
    device = model_device(model)
    loss_of = model_loss(model, transform, augment, amp)
    log = _Log(desc, epochs, first_epoch, progress, per_epoch=True)

    def one_epoch(epoch: int) -> dict:
        model.train()
        out = train_steps(
            on_device(log.batches(epoch, train_loader), device), loss_of, optimizer, scheduler, bar=log.step_bar
        )
        return {"train_loss": out["train_loss"], "train_acc": out["train_acc"]}

    def validate() -> dict:
        ev = evaluate(model, val_loader, transform=transform, amp=amp, warn=False)
        return {"val_loss": ev["loss"], "val_acc": ev["acc"]}

    selection = _Selection(model, keep_best, patience, monitor)
    history = _epochs(epochs, one_epoch, validate if val_loader is not None else None, selection, log)
    restored = selection.finish(history)
    if progress and val_loader is not None and keep_best:
        best = best_epoch(history)
        # a phase of fine_tune only reports its best epoch: fine_tune then says which phase is kept
        where = log.label(best["epoch"]) + (" (the last)" if restored is None else "")
        if desc.startswith("phase"):
            print(f"{where[0].upper() + where[1:]} was {desc}'s best: {monitor} {best[monitor]:.4f}.")
        else:
            print(f"Kept the weights of {where}: {monitor} {best[monitor]:.4f}.")
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


def _image_files(files: str | os.PathLike | list, skip_bad: bool = False) -> tuple[list[str], list[str]]:
    """(paths, unreadable folders skipped) of a file, a folder (its image files, sub-folders included, hidden
    ones skipped) or a list. An unreadable sub-folder is an error naming it, or with ``skip_bad`` a warning."""
    if isinstance(files, (str, os.PathLike)):
        p = Path(files).expanduser()
        if p.is_dir():
            unreadable: list[tuple[str, str]] = []
            found = _walk(str(p), None, set(), unreadable)
            if unreadable and not skip_bad:
                raise _unreadable_error(*unreadable[0], ", move it out, or pass skip_bad=True")
            for d, why in unreadable:
                warnings.warn(f"Skipped {d}: {why}.", stacklevel=4)  # past inference_mode's wrapper
            if not found:
                raise FileNotFoundError(f"No image files in {p} (extensions {', '.join(IMG_EXTENSIONS)}).")
            return sorted(found), [d for d, _ in unreadable]
        files = [p]
    paths = [str(Path(f).expanduser()) for f in files]
    for f in paths:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"Image file not found: {f}")
    return paths, []


class Predictions(list):
    """What :func:`predict_files` returns: a list of ``{"file", "top"}`` dicts, with ``skipped``: the files
    and folders left out as unreadable (``skip_bad=True``)."""

    def __init__(self, items=(), skipped: list[str] | None = None):
        super().__init__(items)
        self.skipped = list(skipped or [])


@torch.inference_mode()
def predict_files(
    model: nn.Module,
    files: str | os.PathLike | list,
    preprocess: Transform,
    classes: list[str] | tuple[str, ...],
    k: int = 3,
    batch_size: int = 32,
    amp: bool = True,
    skip_bad: bool = False,
) -> Predictions:
    """Top-``k`` classes with probabilities for image files: ``[{"file": path, "top": [(class, p), ...]}, ...]``.

    ``files`` is one file, a folder or a list. Any size, format and mode Pillow reads is decoded to RGB,
    upright (EXIF), straight to ``preprocess``'s resize size, ``batch_size`` files at a time. As in
    :func:`load_image_folder`, an unreadable file or folder is an error naming it and the reason;
    ``skip_bad=True`` skips such files and folders instead, warns with their names and lists them in
    ``.skipped`` of the result.
    """
    paths, skipped = _image_files(files, skip_bad)
    size = int(preprocess.resize_size[0])
    outputs = head_of(model)[1].out_features
    if len(classes) != outputs:
        raise ValueError(f"{len(classes)} class names for a model with {outputs} outputs: pass the model's classes.")
    device = model_device(model)
    was_training = model.training
    model.eval()
    out, bad = Predictions(), []
    try:
        for i in range(0, len(paths), batch_size):
            chunk = paths[i : i + batch_size]
            images, kept, chunk_bad = _decode_all(chunk, size, skip_bad)  # one pass; bad files only with skip_bad
            bad += chunk_bad
            if not kept:
                continue
            with autocast(device, enabled=amp):
                logits = model(prepare_batch(images, device, preprocess))
            probs = logits.float().softmax(1).cpu()
            top = probs.topk(min(k, probs.shape[1]), dim=1)
            for j, v, c in zip(kept, top.values.tolist(), top.indices.tolist()):
                out.append({"file": chunk[j], "top": [(classes[ci], p) for ci, p in zip(c, v)]})
    finally:
        model.train(was_training)
    if bad:
        shown = "; ".join(f"{p} ({why})" for p, why in bad[:10])
        more = f"; and {len(bad) - 10} more (all in .skipped)" if len(bad) > 10 else ""
        warnings.warn(f"Skipped {len(bad)} unreadable image file(s) of {len(paths)}: {shown}{more}.", stacklevel=3)
    out.skipped = skipped + [p for p, _ in bad]
    return out


def evaluate(
    model: nn.Module, loader: DataLoader, transform: Transform | None = None, amp: bool = True, warn: bool = True
) -> dict:
    """Loss, accuracy, balanced accuracy, per-class recall, predictions and labels of ``model`` on ``loader``
    (eval mode, no gradients).

    ``recall[c]`` is the share of class ``c``'s examples predicted as ``c`` (nan for a class absent from
    ``loader``); ``balanced_acc`` is their mean over the classes present, so a model that always answers the
    majority class scores ``1 / classes`` there whatever the imbalance. ``majority`` is the largest class's
    share: with ``warn``, an accuracy that does not beat it gets a warning.
    """
    logits, labels = predict(model, loader, transform, amp)
    preds = logits.argmax(1)
    k = max(logits.shape[1], int(labels.max()) + 1)
    counts = torch.bincount(labels, minlength=k).float()
    hits = torch.bincount(labels[preds == labels], minlength=k).float()
    recall = torch.where(counts > 0, hits / counts.clamp(min=1), torch.full_like(counts, float("nan")))
    acc = (preds == labels).float().mean().item()
    majority = (counts.max() / counts.sum()).item()
    if warn and (counts > 0).sum() > 1 and acc <= majority:
        warnings.warn(
            f"accuracy {acc:.1%} does not beat the majority class's share of {majority:.1%} on these "
            f"{len(labels)} examples (balanced accuracy {recall.nanmean().item():.1%}): the model has not "
            "learnt more than the class frequencies. Look at the per-class recall.",
            stacklevel=2,
        )
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "acc": acc,
        "balanced_acc": recall.nanmean().item(),
        "recall": recall.tolist(),
        "majority": majority,
        "preds": preds,
        "labels": labels,
    }


def fit_head(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int | None = None,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    recipe: Recipe | str | None = None,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    keep_best: bool | None = None,
    patience: int | None = None,
    monitor: str = "val_loss",
    val_split: str = "validation",
    head: nn.Linear | None = None,
    progress: bool = True,
    desc: str = "head",
) -> tuple[nn.Linear, list[dict]]:
    """Train a linear head on cached (frozen-backbone) features: feature extraction without re-running the backbone.

    Equivalent to training ``model.fc`` with the backbone frozen and in eval mode, without
    augmentation, but each epoch costs microseconds instead of a backbone forward pass.
    ``recipe`` gives ``epochs`` (its ``head_epochs``), ``lr`` (``head_lr``), ``weight_decay``, ``patience``
    and keep_best at once; any of them given here wins (without a recipe: 10 epochs, Adam at 1e-3, no
    weight decay, no selection). ``val_features``/``val_labels`` are the validation set; ``keep_best``,
    ``patience`` and ``monitor`` select an epoch on it as in :func:`fit` (``val_split`` names it; never test).
    The caller's random state is left
    as it was. Returns the head (assign it as ``model.fc``) and the per-epoch history.
    """
    r = _as_recipe(recipe)
    has_val = val_features is not None and val_labels is not None
    epochs = _whole("epochs", _pick(epochs, r and r.head_epochs, 10), 1)
    keep_best = (r is not None and has_val) if keep_best is None else keep_best
    patience = patience if patience is not None else (r.patience if r is not None and has_val else None)
    train_features, train_labels = torch.as_tensor(train_features).float(), torch.as_tensor(train_labels).long()
    if len(train_labels) == 0 or len(train_features) != len(train_labels):
        raise ValueError(
            f"fit_head needs as many labels as feature rows, at least one: got {len(train_features)} "
            f"feature rows and {len(train_labels)} labels."
        )
    _check_selection(has_val, keep_best, patience, monitor, val_split)
    k = num_classes or int(train_labels.max()) + 1
    g = torch.Generator().manual_seed(seed)
    if head is None:
        with torch.random.fork_rng(devices=[]):  # a reproducible head without resetting the caller's random state
            torch.manual_seed(seed)
            head = nn.Linear(train_features.shape[1], k)
    opt = torch.optim.Adam(
        head.parameters(),
        lr=_pick(lr, r and r.head_lr, 1e-3),
        weight_decay=_pick(weight_decay, r and r.weight_decay, 0.0),
    )

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = head(x)
        return F.cross_entropy(logits, y), logits

    def one_epoch(epoch: int) -> dict:
        head.train()
        batches = ((train_features[i], train_labels[i]) for i in index_batches(len(train_labels), batch_size, g))
        out = train_steps(batches, loss_of, opt)
        return {"train_loss": out["train_loss"], "train_acc": out["train_acc"]}

    vx, vy = (torch.as_tensor(val_features).float(), torch.as_tensor(val_labels).long()) if has_val else (None, None)

    def validate() -> dict:
        with torch.no_grad():
            head.eval()
            vl = head(vx)
        return {"val_loss": F.cross_entropy(vl, vy).item(), "val_acc": (vl.argmax(1) == vy).float().mean().item()}

    selection = _Selection(head, keep_best, patience, monitor)
    log = _Log(desc, epochs, 1, progress, per_epoch=False)
    history = _epochs(epochs, one_epoch, validate if has_val else None, selection, log)
    selection.finish(history)
    return head, history
