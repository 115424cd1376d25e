"""The course's training recipe, defined once: per strategy, what trains, at which learning rates, for how long.

Notebooks, docs (``python -m tlhelpers recipe`` prints :func:`recipe_table`) and benchmarks all read it
from here, so a number changed here changes everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .stages import RESNET_STAGES, layout

__all__ = [
    "RESNET_STAGES",
    "TRAIN",
    "HEAD_LR",
    "BACKBONE_LR",
    "SCRATCH_LR",
    "Recipe",
    "RECIPES",
    "STRATEGIES",
    "STRATEGY_COLORS",
    "recipe",
    "epochs_for",
    "train_batch_size",
    "recipe_table",
    "lr_text",
]

HEAD_LR = 1e-3  # Adam: a new head starts from random weights and must learn fast
BACKBONE_LR = 1e-4  # pretrained stages move gently: adapted, not overwritten
SCRATCH_LR = 1e-3  # no pretrained weights to protect: the usual Adam rate everywhere


TRAIN = ("head", "last", "all")  # what a strategy trains, whatever the architecture


@dataclass(frozen=True)
class Recipe:
    """One strategy's settings. ``backbone_lr`` is the rate of every trainable stage except the head.

    ``train`` says what trains in any architecture: ``"head"`` (the linear head), ``"last"`` (the last
    block of features and everything after it: ResNet's layer4 + fc) or ``"all"``; :meth:`stages_for`
    turns it into a model's stage names (see :mod:`tlhelpers.stages`), :attr:`trainable` into ResNet's.
    """

    strategy: str
    train: str
    head_lr: float
    backbone_lr: float | None = None  # None: only the head trains
    weights: str = "pretrained"  # "pretrained" or "random" (from scratch)
    head_epochs: int = 40  # feature extraction: epochs of the head on cached features
    weight_decay: float = 0.0
    patience: int = 3  # early stopping: epochs without a better validation loss
    augment: str = "flip"  # fine-tuning runs: random horizontal flips of each batch

    def __post_init__(self) -> None:
        if self.train not in TRAIN:
            raise ValueError(f"Recipe.train must be one of {', '.join(TRAIN)}, got {self.train!r}.")

    @property
    def cached(self) -> bool:
        """True when the backbone is frozen, so its features can be computed once and cached."""
        return self.train == "head"

    def stages_for(self, model: nn.Module) -> tuple[str, ...]:
        """The stages of ``model`` this strategy trains, from its architecture's layout."""
        lay = layout(model)
        if self.train == "head":
            return (lay.head,)
        names = lay.names
        return tuple(names[names.index(lay.partial_from) :]) if self.train == "last" else tuple(names)

    @property
    def trainable(self) -> tuple[str, ...]:
        """The stages this strategy trains in a ResNet (the course backbone): ``("layer4", "fc")`` etc."""
        if self.train == "head":
            return RESNET_STAGES[-1:]
        return RESNET_STAGES[RESNET_STAGES.index("layer4") :] if self.train == "last" else RESNET_STAGES

    def stage_lrs(self, model: nn.Module | None = None) -> dict[str, float]:
        """``{stage: learning rate}`` for every trainable stage of ``model`` (default: a ResNet), what
        ``make_optimizer(stage_lrs=...)`` takes."""
        stages = self.stages_for(model) if model is not None else self.trainable
        return {s: (self.head_lr if s == stages[-1] else self.backbone_lr) for s in stages}

    def apply(self, model: nn.Module) -> torch.optim.Optimizer:
        """Make exactly :meth:`stages_for` trainable in ``model``; return Adam over those stages at their rates."""
        from .freeze import make_optimizer, set_trainable

        set_trainable(model, self.stages_for(model))
        return make_optimizer(
            model, "adam", lr=self.head_lr, stage_lrs=self.stage_lrs(model), weight_decay=self.weight_decay
        )


RECIPES: dict[str, Recipe] = {
    "feature extraction": Recipe("feature extraction", "head", HEAD_LR, weight_decay=1e-3),
    "partial fine-tuning": Recipe("partial fine-tuning", "last", HEAD_LR, BACKBONE_LR),
    "full fine-tuning": Recipe("full fine-tuning", "all", HEAD_LR, BACKBONE_LR),
    "from scratch": Recipe("from scratch", "all", SCRATCH_LR, SCRATCH_LR, weights="random"),
}
STRATEGIES = ("feature extraction", "partial fine-tuning", "full fine-tuning")  # the three, cheapest first
# one colour per strategy in every figure (matplotlib's first three), from scratch in grey
STRATEGY_COLORS = {
    "feature extraction": "#1f77b4",
    "partial fine-tuning": "#ff7f0e",
    "full fine-tuning": "#2ca02c",
    "from scratch": "#7f7f7f",
}


def lr_text(lr: float) -> str:
    """A learning rate as the course writes it: ``1e-4``, ``3e-3``."""
    return f"{lr:.0e}".replace("e-0", "e-").replace("e+0", "e")


def recipe(strategy: str) -> Recipe:
    """The recipe of ``strategy`` (one of :data:`RECIPES`), with one clear error for a typo."""
    try:
        return RECIPES[strategy]
    except KeyError:
        raise ValueError(f"Unknown strategy {strategy!r}: use one of {', '.join(map(repr, RECIPES))}.") from None


def epochs_for(n_train: int, quick: bool = False) -> int:
    """The most epochs a run through the backbone may take (early stopping usually ends it sooner).

    About the same number of optimisation steps at every size: more epochs for tiny sets. ``quick``: 1.
    """
    if quick:
        return 1
    return 30 if n_train <= 200 else 12 if n_train <= 1500 else 4


def train_batch_size(input_px: int, device: torch.device | str = "cpu") -> int:
    """Training batch size: 32 at up to 96 px or on a GPU; 8 above 96 px on a CPU (Lite0's 128 px, ResNet's
    224 px), where training keeps every layer's activations for the backward pass: 8 keeps full fine-tuning,
    beside a notebook's data and other models, within 2 GB of RAM."""
    return 32 if input_px <= 96 or torch.device(device).type == "cuda" else 8


def recipe_table() -> str:
    """The recipe as a Markdown table (strategy, trainable stages, learning rates, epochs, early stopping)."""
    lines = ["| strategy | trainable stages | learning rate (Adam) | epochs | selection |", "|---|---|---|---|---|"]
    for r in RECIPES.values():
        stages = "head (fc)" if r.cached else "all" if r.train == "all" else " + ".join(r.trainable)
        if r.backbone_lr is None:
            lr = f"head {lr_text(r.head_lr)}"
        elif r.backbone_lr == r.head_lr:
            lr = f"{lr_text(r.head_lr)} everywhere"
        else:
            lr = f"pretrained stages {lr_text(r.backbone_lr)}, head {lr_text(r.head_lr)}"
        if r.weights == "random":
            lr += " (random init)"
        ep = (
            f"{r.head_epochs} on cached features"
            if r.cached
            else f"up to {epochs_for(200)} / {epochs_for(1000)} / {epochs_for(10_000)} (200 / 1,000 / 10,000 images)"
        )
        sel = (
            f"best validation loss; weight decay {lr_text(r.weight_decay)}"
            if r.cached
            else (f"best validation loss, patience {r.patience}; {r.augment} augmentation")
        )
        lines.append(f"| {r.strategy} | {stages} | {lr} | {ep} | {sel} |")
    return "\n".join(lines)
