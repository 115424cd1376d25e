"""Choosing a strategy: the decision flowchart of the course as a plain, tested function."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from .recipe import BACKBONE_LR, HEAD_LR, RECIPES, STRATEGIES, STRATEGY_COLORS, lr_text

__all__ = [
    "Recommendation",
    "recommend_strategy",
    "draw_flowchart",
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
        why = (
            "frozen high-level features do not fit the new domain, but too few images to retrain everything: "
            "keep the generic early stages frozen and adapt only the last block"
        )
    elif size == "large" and similar:
        s, scen = "full fine-tuning", "scenario 2: large dataset, similar domain"
        why = "plenty of data supports adapting every layer with a low learning rate for the best accuracy"
    elif size == "large":
        s, scen = "full fine-tuning", "scenario 4: large dataset, different domain"
        why = (
            "the domain needs new features and the data can support them; "
            "pretrained weights still converge faster than random ones"
        )
    elif similar:
        s, scen = "partial fine-tuning", "medium dataset, similar domain"
        why = "enough images to adapt the last block safely; the early generic stages stay frozen"
    else:
        s, scen = "partial fine-tuning", "medium dataset, different domain"
        why = "enough images to adapt the specific (late) stages to the new domain while the generic ones stay frozen"
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


_SHORT = {
    "feature extraction": "feature\nextraction",
    "partial fine-tuning": "partial\nfine-tuning",
    "full fine-tuning": "full\nfine-tuning",
}


def draw_flowchart(highlight: Recommendation | None = None, ax=None):
    """Draw the flowchart (size -> domain -> strategy -> limited-budget step-down) from :func:`recommend_strategy`.

    Every leaf is computed by calling the function, so the drawing cannot disagree with it.
    ``highlight``: a recommendation whose path is drawn bold (the others fade). Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig = ax.figure if ax is not None else plt.figure(figsize=(11, 5.6))
    ax = ax or fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-0.9, 12)
    ax.set_ylim(-0.3, 5.3)
    ax.axis("off")
    sizes = [
        ("small", f"< {SMALL:,} images", SMALL // 2),
        ("medium", f"{SMALL:,} to {LARGE:,}", (SMALL + LARGE) // 2),
        ("large", f"> {LARGE:,} images", LARGE * 5),
    ]
    sel = None
    if highlight is not None:
        n = highlight.n_images
        sel = ("small" if n < SMALL else "large" if n > LARGE else "medium", highlight.similarity, highlight.budget)

    def box(x, y, text, color="#444444", on=True, fill=False, w=None, size=9):
        alpha = 1.0 if on else 0.25
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=size,
            color="white" if fill else color,
            alpha=alpha,
            fontweight="bold" if (on and sel) else "normal",
            zorder=3,
            bbox=dict(
                boxstyle="round,pad=0.35",
                fc=color if fill else "white",
                ec=color,
                alpha=alpha,
                lw=2.2 if (on and sel) else 1.0,
            ),
        )

    def arrow(x0, y0, x1, y1, on=True, label=None):
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            zorder=1,
            arrowprops=dict(arrowstyle="-|>", color="#333333", alpha=1.0 if on else 0.2, lw=2 if (on and sel) else 1),
        )
        if label:
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                label,
                ha="center",
                va="center",
                fontsize=7.5,
                alpha=1.0 if on else 0.3,
                bbox=dict(fc="white", ec="none", pad=0.5),
                zorder=2,
            )

    box(6, 5.0, "1. How many labelled training images?", on=True)
    ys, yd, yb = 3.9, 2.35, 0.25
    for i, (band, label, n) in enumerate(sizes):
        xs = 2 + 4 * i
        on_s = sel is None or sel[0] == band
        arrow(6, 4.78, xs, ys + 0.22, on_s)
        box(xs, ys, f"{band}\n{label}", on=on_s)
        for j, sim in enumerate(("similar", "different")):
            xd = xs - 1 + 2 * j
            on_d = sel is None or sel[:2] == (band, sim)
            arrow(xs, ys - 0.3, xd, yd + 0.3, on_d, label=f"2. {sim}\ndomain")
            ample, limited = recommend_strategy(n, sim, "ample"), recommend_strategy(n, sim, "limited")
            on_a = sel is None or sel == (band, sim, "ample")
            on_l = sel is None or sel == (band, sim, "limited")
            box(xd, yd, _SHORT[ample.strategy], color=STRATEGY_COLORS[ample.strategy], fill=True, on=on_a or on_l)
            scen = ample.scenario.split(":")[0] if ample.scenario.startswith("scenario") else "medium band"
            ax.text(
                xd, yd - 0.55, scen, ha="center", fontsize=7.5, color="#555555", alpha=1.0 if (on_a or on_l) else 0.3
            )
            arrow(xd, yd - 0.7, xd, yb + 0.35, on_l, label="3. if compute\nis limited")
            box(xd, yb, _SHORT[limited.strategy], color=STRATEGY_COLORS[limited.strategy], on=on_l, size=8)
    ax.text(-0.85, yd, "ample\ncompute:", fontsize=8.5, va="center", color="#333333")
    ax.text(-0.85, yb, "limited\ncompute:", fontsize=8.5, va="center", color="#333333")
    return fig
