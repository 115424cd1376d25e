"""Self-checks for notebook 03 (the fine-tuning simulator)."""

from __future__ import annotations

import torch.nn as nn

from ..freeze import stage_names, stage_params
from ..recipe import RESNET_STAGES
from . import report

__all__ = ["check_layer3_and_head", "check_stem_only", "check_cheaper_step"]


def _stages(answer) -> set[str] | None:
    """A learner's answer as a set of stage names ("head" means "fc"), or None if it is not a collection of names."""
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        return None
    out = set()
    for a in answer:
        if not isinstance(a, str):
            return None
        out.add("fc" if a.strip().lower() == "head" else a.strip().lower())
    return out


def check_layer3_and_head(model: nn.Module) -> bool:
    """Exercise 1: exactly ``layer3`` and the head are trainable (every parameter), everything else frozen."""
    status = {}
    for s in stage_names(model):
        flags = [p.requires_grad for p in stage_params(model, s)]
        status[s] = "trainable" if all(flags) else "frozen" if not any(flags) else "partly trainable"
    want = {s: "trainable" if s in ("layer3", "fc") else "frozen" for s in status}
    wrong = [f"{s} is {status[s]} (should be {want[s]})" for s in status if status[s] != want[s]]
    n = sum(p.numel() for s in ("layer3", "fc") for p in stage_params(model, s))
    return report(
        not wrong,
        f"layer3 + head trainable: {n:,} parameters; stem, layer1, layer2, layer4 frozen.",
        "; ".join(wrong) + ". Set requires_grad = False on every parameter first, then True on "
        "model.layer3.parameters() and model.fc.parameters().",
    )


def check_stem_only(weight_gradient, backward_reaches) -> bool:
    """Exercise 2: with only the stem trainable, which stages get weight gradients, and whose outputs does the
    backward pass reach?"""
    wg, br = _stages(weight_gradient), _stages(backward_reaches)
    if wg is None or br is None:
        return report(False, "", "give two sets of stage names, e.g. {'stem'} and {'layer4', 'fc'}.")
    if not wg and not br:
        return report(False, "", "fill in the two sets first: your prediction, before looking at the real step.")
    ok_wg, ok_br = wg == {"stem"}, br == set(RESNET_STAGES)
    if ok_wg and ok_br:
        return report(
            True,
            "only the stem's weights get a gradient, but to get there the backward pass runs through every "
            "stage. In the frozen ones it computes the gradient for their input (to pass it on), not for their "
            "weights: section 5 measures what such a step costs.",
            "",
        )
    hints = []
    if not ok_wg:
        hints.append("weight gradients go only to stages whose parameters have requires_grad=True")
    if not ok_br:
        hints.append(
            "the chain rule needs the gradient at the stem's output, which is computed from the gradients at "
            "every later stage's output, frozen or not"
        )
    return report(False, "", "; ".join(hints) + ". Check with tl.train_step(..., ['stem']).summary().")


def check_cheaper_step(answer: str) -> bool:
    """Exercise 3: which single trainable stage gives the cheaper step, ``"stem"`` or ``"fc"``?"""
    a = str(answer).strip().lower()
    a = "fc" if a == "head" else a
    if a not in ("stem", "fc"):
        return report(False, "", "answer 'stem' or 'fc'.")
    return report(
        a == "fc",
        "with only the head trainable the backward pass stops at the head's input: no gradient "
        "is computed inside the backbone. With only the stem trainable (9,536 parameters, under 0.1% of the "
        "model) the backward pass must still run through the whole network to reach it.",
        "think less about how many parameters are trainable and more about how far the backward pass must "
        "travel from the loss to reach them.",
    )
