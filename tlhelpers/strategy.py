"""Choosing a strategy: the decision flowchart of the course as a plain, tested function."""

from __future__ import annotations

import copy
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from .data import ImageTensors, make_loader, train_val_split
from .embed import default_batch_size, embed
from .freeze import count_params, set_trainable
from .models import load_backbone, replace_head
from .recipe import BACKBONE_LR, HEAD_LR, RECIPES, STRATEGIES, epochs_for, lr_text, recipe
from .train import evaluate, fit, fit_head, set_seed

__all__ = [
    "Recommendation",
    "recommend_strategy",
    "run_strategy",
    "size_band",
    "SMALL",
    "LARGE",
    "HEAD_LR",
    "BACKBONE_LR",
    "STRATEGIES",
    "STAGES",
    "TRAINED_AT",
    "trained",
]

SMALL, LARGE = 1_000, 10_000  # the flowchart's thresholds: < 1,000 images is small, > 10,000 is large
STAGES = {s: list(RECIPES[s].trainable) for s in STRATEGIES}  # trainable stages per strategy, from the recipe
# a run has trained when the kept model gets its own training images right at least this far from the
# majority class's share (0) to perfect (1): any model that learned fits the images it learned from.
# A quarter, not more: early stopping may keep an early epoch of a weak but working model (the course
# ResNet18's feature extraction on 100 cats and dogs fits some 71-74% of its training images), while the
# runs that failed (notebook 06) stayed within a few points of chance.
TRAINED_AT = 0.25


def trained(train_correct: torch.Tensor, labels: torch.Tensor) -> bool:
    """Did a run train? Its kept model's accuracy on its own training images (``train_correct``, one bool
    per image, scored as the model is used: evaluation mode, no augmentation) must lie at least
    ``TRAINED_AT`` of the way from the majority class's share of ``labels`` to 100%.

    The test is on training images, not on validation: on some 20 validation images a run that failed and a
    run that is merely weak cannot be told apart, but a model that cannot fit the images it was trained on
    has failed, whatever its validation score.
    """
    majority = torch.bincount(labels).max().item() / len(labels)
    return train_correct.float().mean().item() >= majority + TRAINED_AT * (1 - majority)


def _lr_text(strategy: str) -> str:
    r = RECIPES[strategy]
    if r.backbone_lr is None:
        return f"head {lr_text(r.head_lr)}"
    if r.trainable == ("layer4", "fc"):
        return f"layer4 {lr_text(r.backbone_lr)}, head {lr_text(r.head_lr)}"
    low = "(low, so they are adapted, not wiped out)"
    return f"pretrained stages {lr_text(r.backbone_lr)} {low}, head {lr_text(r.head_lr)}"


@dataclass(frozen=True)
class Recommendation:
    strategy: str  # "feature extraction" | "partial fine-tuning" | "full fine-tuning"
    scenario: str  # which of the four scenarios (or the medium band between them)
    trainable: list[str]  # the ResNet stages to unfreeze
    learning_rates: str
    reason: str
    path: str = ""  # the answers that led through the flowchart, e.g. "500 images: small -> similar -> ample"
    n_images: int = 0  # the inputs it was computed from
    similarity: str = ""
    budget: str = ""

    def __str__(self) -> str:
        return (
            f"{self.strategy} ({self.scenario})\n  path: {self.path}\n"
            f"  train: {', '.join(self.trainable)}; lr: {self.learning_rates}\n  why: {self.reason}"
        )


# (size, similar domain?) -> (strategy, scenario, why): the flowchart's leaves with ample compute
_LEAVES = {
    ("small", True): (
        "feature extraction",
        "scenario 1: small dataset, similar domain",
        "few images and relevant features: train only the head, anything more overfits",
    ),
    ("small", False): (
        "partial fine-tuning",
        "scenario 3: small dataset, different domain",
        "frozen high-level features do not fit the new domain, but too few images to retrain everything: "
        "keep the generic early stages frozen and adapt only the last block",
    ),
    ("large", True): (
        "full fine-tuning",
        "scenario 2: large dataset, similar domain",
        "plenty of data supports adapting every layer with a low learning rate for the best accuracy",
    ),
    ("large", False): (
        "full fine-tuning",
        "scenario 4: large dataset, different domain",
        "the domain needs new features and the data can support them; "
        "pretrained weights still converge faster than random ones",
    ),
    ("medium", True): (
        "partial fine-tuning",
        "medium dataset, similar domain",
        "enough images to adapt the last block safely; the early generic stages stay frozen",
    ),
    ("medium", False): (
        "partial fine-tuning",
        "medium dataset, different domain",
        "enough images to adapt the specific (late) stages to the new domain while the generic ones stay frozen",
    ),
}


def size_band(n_images: int) -> str:
    """The flowchart's first question: "small" (< SMALL images), "large" (> LARGE) or "medium"."""
    return "small" if n_images < SMALL else "large" if n_images > LARGE else "medium"


def recommend_strategy(n_images: int, similarity: str = "similar", budget: str = "ample") -> Recommendation:
    """Dataset size, similarity to the pretraining domain, and compute budget -> a strategy with its reason.

    ``similarity``: "similar" or "different"; ``budget``: "limited" or "ample".
    Follows the course flowchart: size first (< 1,000 small, > 10,000 large), then domain, then budget.
    """
    if not isinstance(n_images, numbers.Integral) or isinstance(n_images, bool) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    if similarity not in ("similar", "different"):
        raise ValueError(f"similarity must be 'similar' or 'different', got {similarity!r}")
    if budget not in ("limited", "ample"):
        raise ValueError(f"budget must be 'limited' or 'ample', got {budget!r}")
    n_images = int(n_images)
    size = size_band(n_images)
    similar = similarity == "similar"
    s, scen, why = _LEAVES[size, similar]
    if budget == "limited" and s != "feature extraction":
        cheaper = "partial fine-tuning" if (s == "full fine-tuning" and not similar) else "feature extraction"
        why = (
            f"{why}; but with a limited compute budget, {cheaper} is the affordable step down "
            "(fewer gradients, less memory)"
        )
        s = cheaper
    band = {
        "small": f"small (< {SMALL:,})",
        "large": f"large (> {LARGE:,})",
        "medium": f"medium ({SMALL:,}-{LARGE:,})",
    }[size]
    path = f"{n_images:,} images: {band} -> {similarity} domain -> {budget} compute"
    return Recommendation(s, scen, list(STAGES[s]), _lr_text(s), why, path, n_images, similarity, budget)


def _test_features(
    model: nn.Module, test: ImageTensors, preprocess: Callable, cache: dict | None, key: nn.Module | None
) -> torch.Tensor:
    """The frozen features of ``test``, from ``cache`` when it holds them for this backbone and these images."""
    if cache is None or key is None:
        return embed(model, test.images, preprocess)[0]
    ids = (id(key), id(test.images))
    if ids not in cache:  # the stored references keep both objects alive, so their ids stay unique
        cache[ids] = (key, test.images, embed(model, test.images, preprocess)[0])
    return cache[ids][2]


def run_strategy(
    strategy: str,
    train: ImageTensors,
    test: ImageTensors,
    *,
    epochs: int | None = None,
    augment: Callable | None = None,
    seed: int = 0,
    backbone: nn.Module | None = None,
    preprocess: Callable | None = None,
    weights: str = "course",
    device: torch.device | str | None = None,
    batch_size: int = 32,
    cache: dict | None = None,
) -> dict:
    """Train ``strategy`` (a key of ``RECIPES``) on ``train`` and score it on ``test``.

    The method of notebook 06 and ``benchmarks/transfer_table.py``: a stratified 20%
    of ``train`` is held out for validation, the epoch with the best validation loss
    is kept (early stopping with the recipe's patience), and the test set is scored
    once. ``seed`` fixes everything random: the split, the new head, the batch order,
    the flips (and a random backbone's weights). ``backbone``, ``preprocess``: a
    loaded backbone to start from (copied, never changed); without one,
    ``load_backbone("resnet18", weights)``. ``epochs``: ``epochs_for(len(train))``.
    ``batch_size``: the fine-tuning runs' training batch (smaller saves memory at a
    larger input size). ``cache``: a dict kept between calls, where feature extraction
    keeps the test set's frozen features, so runs that share ``backbone`` and ``test``
    embed it once (it holds the backbone and images it was computed from and is used
    only when both are the very same objects).

    Returns ``val_correct`` and ``test_correct`` (which images it got right, bool
    tensors: select and compare on validation, report test), ``val_acc``,
    ``test_acc``, ``seconds`` (training and scoring), ``trainable`` (parameters),
    ``train_acc`` (the kept model on its own training images, evaluation mode) and
    ``trained``: False when that accuracy shows the run failed to train (see
    :func:`trained`); leave such a run out of every choice and comparison.
    """
    r = recipe(strategy)  # trainable stages, learning rates, patience: recipe.py
    epochs = epochs_for(len(train)) if epochs is None else epochs
    device = device or "cpu"
    set_seed(seed)  # a random backbone's initial weights
    source = backbone if r.weights != "random" else None  # what the cache of test features is keyed on
    if backbone is None or r.weights == "random":
        w = "random" if r.weights == "random" else weights
        backbone, preprocess = load_backbone("resnet18", weights=w, verbose=False)
    elif preprocess is None:
        raise ValueError("run_strategy got a backbone but no preprocess: pass both.")
    else:
        backbone = copy.deepcopy(backbone)
    set_seed(seed)  # again: the split, head and flips draw the same numbers either way
    train, val = train_val_split(train, val_fraction=0.2, seed=seed)
    model = replace_head(backbone, len(train.classes), seed=seed).to(device)
    eval_batch = default_batch_size(preprocess)  # 256 at 64 px, 16 at 128 px: activations within RAM
    t0 = time.perf_counter()
    if r.cached:  # frozen backbone: features once, a head on standardised features
        set_trainable(model, r.stages_for(model))
        f_train, f_val = (embed(model, d.images, preprocess)[0] for d in (train, val))
        f_test = _test_features(model, test, preprocess, cache, key=source)
        mu, sd = f_train.mean(0), f_train.std(0) + 1e-6  # training statistics only
        head, _ = fit_head(
            (f_train - mu) / sd,
            train.labels,
            len(train.classes),
            (f_val - mu) / sd,
            val.labels,
            epochs=r.head_epochs,
            lr=r.head_lr,
            weight_decay=r.weight_decay,
            batch_size=64,
            seed=seed,
            keep_best=True,
            progress=False,
        )
        with torch.no_grad():
            train_correct = head((f_train - mu) / sd).argmax(1) == train.labels
            val_correct = head((f_val - mu) / sd).argmax(1) == val.labels
            test_correct = head((f_test - mu) / sd).argmax(1) == test.labels
    else:  # partial: layer4 + head; full: every stage; the head at HEAD_LR
        fit(
            model,
            make_loader(train, batch_size, shuffle=True, seed=seed, device=device),
            make_loader(val, eval_batch, device=device),
            epochs=epochs,
            optimizer=r.apply(model),
            transform=preprocess,
            augment=augment,
            progress=False,
            keep_best=True,
            patience=r.patience,
        )
        loaders = [make_loader(d, eval_batch, device=device) for d in (train, val, test)]
        train_ev, val_ev, test_ev = (evaluate(model, dl, transform=preprocess, warn=False) for dl in loaders)
        train_correct = train_ev["preds"] == train_ev["labels"]
        val_correct = val_ev["preds"] == val_ev["labels"]
        test_correct = test_ev["preds"] == test_ev["labels"]
    return {
        "val_correct": val_correct,
        "test_correct": test_correct,
        "val_acc": val_correct.float().mean().item(),
        "test_acc": test_correct.float().mean().item(),
        "seconds": time.perf_counter() - t0,
        "trainable": count_params(model)[0],
        "train_acc": train_correct.float().mean().item(),
        "trained": trained(train_correct, train.labels),
    }
