"""Self-checks for notebook 00 (welcome and setup check)."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import report

__all__ = ["check_logits_shape", "check_weights_name", "check_better_than_chance"]


def check_logits_shape(answer, batch: int = 8, num_classes: int = 10) -> bool:
    """Exercise 1: the shape of the logits of ResNet18 with a ``num_classes`` head for ``batch`` images."""
    truth = (batch, num_classes)
    try:
        ok = tuple(int(v) for v in answer) == truth
    except (TypeError, ValueError):
        ok = False
    return report(
        ok,
        f"one row per image, one score per class: {truth}.",
        "the model returns one row per image in the batch and one column per output of the head "
        "(a tuple of two integers, e.g. (3, 4)).",
    )


def check_weights_name(answer: str, model: nn.Module) -> bool:
    """Exercise 2: which pretrained weights ``model`` carries, "course" or "imagenet" (compared on conv1)."""
    from ..models import load_backbone

    course, _ = load_backbone("resnet18", weights="course", verbose=False)
    w = model.conv1.weight.detach().float().cpu()
    truth = "course" if torch.allclose(w, course.conv1.weight.float(), atol=1e-3) else "imagenet"
    ok = isinstance(answer, str) and answer.strip().lower() == truth
    return report(
        ok,
        f"this model carries the {truth} weights (its first convolution matches them).",
        'answer "course" or "imagenet": the line printed by tl.load_backbone says which it loaded.',
    )


def check_better_than_chance(answer: str, acc: float, n: int, chance: float = 0.5) -> bool:
    """Exercise 3 (a decision): is an accuracy ``acc`` on ``n`` test images better than ``chance``?

    The verdict comes from ``stats.accuracy_interval`` (Wilson, 95%): "better" when the interval lies above
    ``chance``, "worse" when below, "can't tell" when it contains it. (The Wilson interval excludes ``chance``
    exactly when ``acc`` is outside chance ± 1.96 * sqrt(chance * (1 - chance) / n), the coin's band.)
    """
    from .. import stats

    iv = stats.accuracy_interval((round(acc * n), n))
    truth = "better" if iv.low > chance else "worse" if iv.high < chance else "can't tell"
    given = (
        answer.strip().lower().replace("cannot", "can't").replace("can not", "can't") if isinstance(answer, str) else ""
    )
    if given not in ("better", "worse", "can't tell"):
        return report(False, "", 'answer "better", "worse" or "can\'t tell".')
    return report(
        given == truth,
        f"{acc:.1%} on {n} images, 95% interval {iv.low:.1%} to {iv.high:.1%} against chance {chance:.0%}: {truth}.",
        f"compare chance ({chance:.0%}) with the 95% interval of {acc:.1%} on {n} images "
        "(tl.stats.accuracy_interval): above it or below it is better or worse; inside it you can't tell.",
    )
