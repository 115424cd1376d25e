"""Self-checks for notebook 02 (the three strategies)."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
import torchvision

from ..freeze import count_params, stage_modules, trainable_stages
from . import judge_choice, report

__all__ = ["check_head_params", "check_partial_setup", "check_adam_state_bytes", "check_bn_fix", "check_rate_choice"]

_BN = nn.modules.batchnorm._BatchNorm


def check_head_params(answer: int, num_classes: int = 10, in_features: int = 512) -> bool:
    """Exercise 1: trainable parameters of feature extraction = the new head's weights and biases."""
    truth = in_features * num_classes + num_classes
    ok = isinstance(answer, (int, np.integer)) and int(answer) == truth
    return report(
        ok,
        f"{in_features} x {num_classes} weights + {num_classes} biases = {truth:,}.",
        "a Linear(in, out) layer has in x out weights plus one bias per output.",
    )


def check_partial_setup(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    stages: tuple[str, ...] = ("layer3", "layer4", "fc"),
    num_classes: int = 2,
) -> bool:
    """Exercise 2: exactly ``stages`` trainable (fully), a new head, and an optimizer over exactly the
    trainable parameters with a larger learning rate for the head than for the pretrained blocks."""
    got = trainable_stages(model)
    if got != list(stages):
        return report(False, "", f"trainable stages are {got or 'none'}; they should be {list(stages)}.")
    partial = [s for s in stages if not all(p.requires_grad for m in stage_modules(model, s) for p in m.parameters())]
    if partial:
        return report(False, "", f"only part of {partial[0]} is trainable: unfreeze all of its parameters.")
    if not isinstance(model.fc, nn.Linear) or model.fc.out_features != num_classes:
        return report(False, "", f"replace the head: model.fc = nn.Linear(model.fc.in_features, {num_classes}).")
    in_opt = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if len(in_opt) != len(set(map(id, in_opt))):
        return report(False, "", "a parameter appears in two parameter groups: give each stage its own group.")
    if {id(p) for p in in_opt} != {id(p) for p in trainable}:
        extra = len({id(p) for p in in_opt} - {id(p) for p in trainable})
        return report(
            False,
            "",
            f"the optimizer should hold exactly the trainable parameters "
            f"({extra} frozen ones are in it, {len({id(p) for p in trainable} - {id(p) for p in in_opt})} trainable "
            f"ones are missing).",
        )
    head_ids = {id(p) for p in model.fc.parameters()}
    head_lrs = {g["lr"] for g in optimizer.param_groups if any(id(p) in head_ids for p in g["params"])}
    body_lrs = {g["lr"] for g in optimizer.param_groups if any(id(p) not in head_ids for p in g["params"])}
    if len(head_lrs) != 1 or not body_lrs or min(head_lrs) <= max(body_lrs):
        return report(
            False,
            "",
            "put the head in its own parameter group with a larger learning rate than "
            "the pretrained blocks (e.g. 1e-3 vs 1e-4).",
        )
    t, n = count_params(model)
    return report(
        True,
        f"{', '.join(stages)} trainable ({t:,} / {n:,} parameters, {t / n:.1%}), "
        f"head lr {min(head_lrs):g} > backbone lr {max(body_lrs):g}.",
        "",
    )


def check_adam_state_bytes(answer: int, model: nn.Module) -> bool:
    """Exercise 3: Adam's state for ``model`` = two float32 buffers (exp_avg, exp_avg_sq) per trainable weight.

    Accepts 8 bytes x trainable parameters, with or without Adam's tiny per-tensor ``step`` counters.
    """
    t, _ = count_params(model)
    truth = 8 * t
    ok = isinstance(answer, (int, np.integer, float)) and abs(float(answer) - truth) <= 0.01 * truth
    return report(
        ok,
        f"2 buffers x 4 bytes x {t:,} trainable parameters = {truth:,} bytes ({truth / 2**20:.1f} MiB).",
        "Adam stores two float32 tensors (4 bytes per number) the shape of each trainable parameter; "
        "frozen parameters get none.",
    )


def check_bn_fix(fix: Callable[[nn.Module], object]) -> bool:
    """Exercise 4: ``fix(model)`` (called right after ``model.train()``) keeps frozen BatchNorm layers' running
    statistics unchanged while BatchNorm layers of trainable stages keep learning theirs."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(("layer4.", "fc."))
    bns = {n: m for n, m in model.named_modules() if isinstance(m, _BN)}
    before = {n: m.running_mean.clone() for n, m in bns.items()}
    model.train()
    try:
        fix(model)
        with torch.no_grad():
            model(torch.randn(8, 3, 64, 64) * 2 + 1)
    except Exception as e:
        return report(False, "", f"your function raised {type(e).__name__}: {e}")
    drifted = [n for n, m in bns.items() if not torch.equal(m.running_mean, before[n])]
    frozen_drift = [n for n in drifted if not n.startswith("layer4.")]
    if frozen_drift:
        return report(
            False,
            "",
            f"the frozen BatchNorm {frozen_drift[0]} still updated its running statistics: "
            "put frozen BatchNorm layers in eval mode (m.eval()).",
        )
    stuck = [n for n in bns if n.startswith("layer4.") and n not in drifted]
    if stuck:
        return report(
            False,
            "",
            f"{stuck[0]} belongs to trainable layer4 but stopped updating its statistics: "
            "only BatchNorm layers whose parameters are frozen should go to eval mode.",
        )
    return report(True, "frozen BatchNorm layers kept their statistics; layer4's kept learning.", "")


def check_rate_choice(lr, forgetting: Mapping[float, tuple], before: float, max_loss: float = 0.10) -> bool:
    """Exercise 5 (a decision): of the rates that keep the source task within ``max_loss`` of ``before``, one
    whose target (cat/dog) validation accuracy ties with the best, judged by ``tl.stats.choose`` (paired).

    ``forgetting``: lr -> (target correctness vector on the validation images, source accuracy). Among tied
    rates the course's rule takes the lowest (it forgets least); any tied rate counts as right.
    """
    if lr is None:
        return report(False, "", "set `lr` to one of the four backbone rates in the table of section 7.")
    if lr not in forgetting:
        return report(False, "", f"choose one of the measured rates: {', '.join(f'{r:.0e}' for r in forgetting)}.")
    allowed = sorted(r for r, (_, s) in forgetting.items() if s >= before - max_loss)
    if not allowed:
        return report(
            lr == min(forgetting),
            "every rate forgot too much; the lowest forgets least.",
            "no rate keeps the source task within the limit: the lowest forgets least.",
        )
    if lr not in allowed:
        return report(False, "", f"{lr:.0e} loses more than {max_loss:.0%} of the source task: it is ruled out first.")
    target = {r: forgetting[r][0] for r in allowed}
    return judge_choice(
        lr, target, on="validation", what="rates that keep the old task", why_first=" (lower)", label="{:.0e}".format
    )
