"""The fine-tuning simulator's logic: one real training step with chosen stages frozen, and what it did.

The widget in :mod:`tlhelpers.widgets` is only a view over :func:`train_step`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .batch import prepare_batch
from .device import autocast
from .freeze import count_params, set_trainable, stage_modules, stage_names, stage_params

__all__ = ["StepReport", "train_step"]


@dataclass
class StepReport:
    """What one training step did, per stage (input to output order)."""

    stages: list[str]
    trainable: dict[str, bool]
    grad_norm: dict[str, float]  # L2 norm of the parameter gradients (0.0: no gradient reached the weights)
    grad_rms: dict[str, float]  # per-parameter RMS: grad_norm / sqrt(parameters), comparable across stage sizes
    signal_norm: dict[str, float]  # L2 norm of the gradient w.r.t. the stage's output (0.0: backward never got here)
    changed: dict[str, int]  # parameter tensors whose values changed in the step
    n_tensors: dict[str, int]  # parameter tensors in the stage
    changed_names: list[str]  # the names of the changed parameter tensors (``layer4.0.conv1.weight``, ...)
    trainable_params: int
    total_params: int
    loss: float
    seconds: float

    def receives_gradient(self, stage: str) -> bool:
        """True if gradients reached this stage's weights (only trainable stages)."""
        return self.grad_norm[stage] > 0

    def passes_signal(self, stage: str) -> bool:
        """True if the backward pass reached this stage's output (it may still be frozen)."""
        return self.signal_norm[stage] > 0

    def summary(self) -> str:
        """Booleans and counts only (no norms, no times): the deterministic part of the step."""

        def names(pred):
            return ", ".join(s for s in self.stages if pred(s)) or "none"

        return (
            f"trainable: {names(lambda s: self.trainable[s])} ({self.trainable_params:,} / {self.total_params:,} "
            f"parameters)\n"
            f"weight gradients reached: {names(self.receives_gradient)}\n"
            f"backward pass reached the output of: {names(self.passes_signal)}\n"
            f"parameter tensors changed: "
            + (
                ", ".join(f"{s} {self.changed[s]}/{self.n_tensors[s]}" for s in self.stages if self.changed[s])
                or "none"
            )
        )


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    trainable: list[str] | dict[str, bool],
    lr: float = 1e-2,
    transform=None,
    amp: bool = False,
) -> StepReport:
    """Make exactly the ``trainable`` stages trainable, run one forward/backward/SGD step on a real batch.

    Returns per-stage weight-gradient norms (where gradients reach parameters), the norm of the
    gradient arriving at each stage's output (how far backpropagation travels), how many parameter
    tensors changed, the trainable count, the loss and the wall time of the step.
    """
    if images.ndim != 4 or len(images) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"Need a non-empty batch (N, 3, H, W) with N labels, got images {tuple(images.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    stages = stage_names(model)
    if isinstance(trainable, str):
        trainable = [trainable]
    if isinstance(trainable, dict):
        trainable = [s for s, on in trainable.items() if on]
    set_trainable(model, trainable)
    device = next(model.parameters()).device
    params = {s: stage_params(model, s) for s in stages}
    names = {id(p): n for n, p in model.named_parameters()}
    before = {s: [p.detach().clone() for p in ps] for s, ps in params.items()}
    signal = {s: 0.0 for s in stages}

    def make_hook(s):
        def fwd_hook(module, inp, out):
            if torch.is_tensor(out) and out.requires_grad:
                out.register_hook(lambda g: signal.__setitem__(s, signal[s] + g.float().norm().item()))

        return fwd_hook

    hooks = [stage_modules(model, s)[-1].register_forward_hook(make_hook(s)) for s in stages]
    trainable_ps = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable_ps, lr=lr) if trainable_ps else None
    model.train()
    for p in model.parameters():
        p.grad = None
    t0 = time.perf_counter()
    try:
        x = prepare_batch(images, device, transform)  # uint8 scaled once; float taken as already in [0, 1]
        with autocast(device, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), labels.to(device))
        if trainable_ps:
            loss.backward()
            opt.step()
    finally:
        for h in hooks:
            h.remove()
    seconds = time.perf_counter() - t0
    grad_norm = {
        s: float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in ps if p.grad is not None) + 0.0))
        if any(p.grad is not None for p in ps)
        else 0.0
        for s, ps in params.items()
    }
    sizes = {s: sum(p.numel() for p in ps if p.grad is not None) for s, ps in params.items()}
    grad_rms = {s: grad_norm[s] / math.sqrt(sizes[s]) if sizes[s] else 0.0 for s in stages}
    diff = {s: [not torch.equal(b, p.detach()) for b, p in zip(before[s], params[s])] for s in stages}
    t, n = count_params(model)
    return StepReport(
        stages=stages,
        trainable={s: any(p.requires_grad for p in params[s]) for s in stages},
        grad_norm=grad_norm,
        grad_rms=grad_rms,
        signal_norm=signal,
        changed={s: sum(d) for s, d in diff.items()},
        n_tensors={s: len(ps) for s, ps in params.items()},
        changed_names=[names[id(p)] for s in stages for p, d in zip(params[s], diff[s]) if d],
        trainable_params=t,
        total_params=n,
        loss=loss.item(),
        seconds=seconds,
    )
