"""Choosing a strategy: the decision flowchart of the course as a plain, tested function."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from .recipe import BACKBONE_LR, HEAD_LR, RECIPES, STRATEGIES, lr_text

__all__ = [
    "Recommendation",
    "recommend_strategy",
    "size_band",
    "SMALL",
    "LARGE",
    "HEAD_LR",
    "BACKBONE_LR",
    "STRATEGIES",
    "STAGES",
]

SMALL, LARGE = 1_000, 10_000  # the flowchart's thresholds: < 1,000 images is small, > 10,000 is large
STAGES = {s: list(RECIPES[s].trainable) for s in STRATEGIES}  # trainable stages per strategy, from the recipe


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
