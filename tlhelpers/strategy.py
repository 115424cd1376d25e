"""Choosing a strategy: the decision flowchart of the course as a plain, tested function."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

__all__ = ["Recommendation", "recommend_strategy", "SMALL", "LARGE"]

SMALL, LARGE = 1_000, 10_000  # the flowchart's thresholds: < 1,000 images is small, > 10,000 is large

_STAGES = {
    "feature extraction": ["fc"],
    "partial fine-tuning": ["layer4", "fc"],
    "full fine-tuning": ["stem", "layer1", "layer2", "layer3", "layer4", "fc"],
}
_LR = {
    "feature extraction": "head 1e-3",
    "partial fine-tuning": "layer4 1e-4, head 1e-3",
    "full fine-tuning": "all 1e-4 (low, so the pretrained weights are adapted, not wiped out)",
}


@dataclass(frozen=True)
class Recommendation:
    strategy: str          # "feature extraction" | "partial fine-tuning" | "full fine-tuning"
    scenario: str          # which of the four scenarios (or the medium band between them)
    trainable: list[str]   # the ResNet stages to unfreeze
    learning_rates: str
    reason: str
    path: str = ""         # the answers that led through the flowchart, e.g. "500 images: small -> similar -> ample"

    def __str__(self) -> str:
        return (f"{self.strategy} ({self.scenario})\n  path: {self.path}\n"
                f"  train: {', '.join(self.trainable)}; lr: {self.learning_rates}\n  why: {self.reason}")


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
    size = "small" if n_images < SMALL else "large" if n_images > LARGE else "medium"
    similar = similarity == "similar"
    if size == "small" and similar:
        s, scen = "feature extraction", "scenario 1: small dataset, similar domain"
        why = "few images and relevant features: train only the head, anything more overfits"
    elif size == "small":
        s, scen = "partial fine-tuning", "scenario 3: small dataset, different domain"
        why = ("frozen high-level features do not fit the new domain, but too few images to retrain everything: "
               "keep the generic early stages frozen and adapt only the last block")
    elif size == "large" and similar:
        s, scen = "full fine-tuning", "scenario 2: large dataset, similar domain"
        why = "plenty of data supports adapting every layer with a low learning rate for the best accuracy"
    elif size == "large":
        s, scen = "full fine-tuning", "scenario 4: large dataset, different domain"
        why = "the domain needs new features and the data can support them; pretrained weights still converge faster than random ones"
    elif similar:
        s, scen = "partial fine-tuning", "medium dataset, similar domain"
        why = "enough images to adapt the last block safely; the early generic stages stay frozen"
    else:
        s, scen = "partial fine-tuning", "medium dataset, different domain"
        why = "enough images to adapt the specific (late) stages to the new domain while the generic ones stay frozen"
    if budget == "limited" and s != "feature extraction":
        cheaper = "partial fine-tuning" if (s == "full fine-tuning" and not similar) else "feature extraction"
        why = f"{why}; but with a limited compute budget, {cheaper} is the affordable step down (fewer gradients, less memory)"
        s = cheaper
    band = {"small": f"small (< {SMALL:,})", "large": f"large (> {LARGE:,})", "medium": f"medium ({SMALL:,}-{LARGE:,})"}[size]
    path = f"{n_images:,} images: {band} -> {similarity} domain -> {budget} compute"
    return Recommendation(s, scen, list(_STAGES[s]), _LR[s], why, path)
