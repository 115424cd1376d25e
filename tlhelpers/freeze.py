"""Freezing by stage, the trainable-parameter diagnostics, and optimizers over trainable parameters only.

A *stage* is a named group of modules, defined per architecture in :mod:`tlhelpers.stages`: for ResNets
``stem`` (``conv1`` + ``bn1``), ``layer1`` .. ``layer4`` and ``fc``; for EfficientNet, ConvNeXt and ViT
their blocks; ``head`` is an alias of the last stage. Any dotted module name (``layer4.1.conv2``) works too.

BatchNorm pitfall: ``requires_grad=False`` stops the *weights* of a BatchNorm layer from changing,
but in ``model.train()`` mode its *running statistics* still drift with every batch. :func:`freeze`
therefore installs a small forward pre-hook that keeps every BatchNorm layer whose parameters are
all frozen in eval mode, whatever ``model.train()`` says; unfreezing the layer lifts it again.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn

from .stages import stage_names, stage_paths

__all__ = [
    "stage_names",
    "stage_modules",
    "stage_params",
    "freeze",
    "unfreeze",
    "unfreeze_last",
    "set_trainable",
    "keep_frozen_bn_in_eval",
    "count_params",
    "trainable_summary",
    "stage_table",
    "param_groups",
    "make_optimizer",
    "trainable_stages",
]

_BN = nn.modules.batchnorm._BatchNorm


def stage_modules(model: nn.Module, stage: str) -> list[nn.Module]:
    """The modules that make up ``stage`` (a stage name, ``head``, or any dotted module name), in order.

    A ViT's ``embed`` stage also holds two bare parameters (class token, positions): see :func:`stage_params`.
    """
    return [model.get_submodule(p) for p in stage_paths(model, stage) if _is_module(model, p)]


def _is_module(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


def stage_params(model: nn.Module, stages: Iterable[str] | str) -> list[nn.Parameter]:
    """Every parameter of ``stages`` (modules' parameters and bare parameters such as a ViT's class token)."""
    if isinstance(stages, str):
        stages = [stages]
    out = []
    for s in stages:
        for path in stage_paths(model, s):
            if _is_module(model, path):
                out += list(model.get_submodule(path).parameters())
            else:
                out.append(model.get_parameter(path))
    return out


def keep_frozen_bn_in_eval(model: nn.Module) -> nn.Module:
    """Make every BatchNorm layer whose parameters are all frozen run in eval mode (idempotent)."""

    def hook(module: nn.Module, args) -> None:
        params = list(module.parameters(recurse=False))
        if module.training and params and not any(p.requires_grad for p in params):
            module.eval()  # use (and keep) the pretrained running statistics

    for m in model.modules():
        if isinstance(m, _BN) and not getattr(m, "_tl_bn_guard", False):
            m.register_forward_pre_hook(hook)
            m._tl_bn_guard = True
    return model


def freeze(model: nn.Module, stages: Iterable[str] | str | None = None, bn_eval: bool = True) -> nn.Module:
    """Set ``requires_grad=False`` on ``stages`` (default: the whole model); frozen BatchNorm stays in eval."""
    for p in model.parameters() if stages is None else stage_params(model, stages):
        p.requires_grad_(False)
    return keep_frozen_bn_in_eval(model) if bn_eval else model


def unfreeze(model: nn.Module, stages: Iterable[str] | str) -> nn.Module:
    """Set ``requires_grad=True`` on ``stages`` (e.g. ``["layer4", "fc"]``)."""
    for p in stage_params(model, stages):
        p.requires_grad_(True)
    return model


def unfreeze_last(model: nn.Module, k: int) -> nn.Module:
    """Freeze everything, then unfreeze the last ``k`` stages (``k=1``: head only; ``k=2``: layer4 + head)."""
    names = stage_names(model)
    if not 0 <= k <= len(names):
        raise ValueError(f"k must be between 0 and {len(names)} (stages: {', '.join(names)}), got {k}")
    freeze(model)
    return unfreeze(model, names[len(names) - k :]) if k else model


def set_trainable(model: nn.Module, stages: Iterable[str]) -> nn.Module:
    """Exactly these stages trainable, all others frozen."""
    freeze(model)
    return unfreeze(model, list(stages))


def trainable_stages(model: nn.Module) -> list[str]:
    """The stages with at least one trainable parameter."""
    return [s for s in stage_names(model) if any(p.requires_grad for p in stage_params(model, s))]


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def trainable_summary(model: nn.Module, show: bool = True) -> str | None:
    """``Trainable: 1,026 / 11,177,538 (0.01%)``: printed (``show=True``) or returned (``show=False``)."""
    t, n = count_params(model)
    line = f"Trainable: {t:,} / {n:,} ({t / n:.2%})"
    if show:  # print only: no return value for Jupyter to echo a second time
        print(line)
        return None
    return line


def stage_table(model: nn.Module, show: bool = True) -> str | None:
    """Per-stage table of trainable/total parameters and status: printed (``show=True``) or returned."""
    rows = []
    for s in stage_names(model):
        ps = stage_params(model, s)
        n, t = sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)
        status = "frozen" if t == 0 else "trainable" if t == n else "partial"
        rows.append((s, t, n, status))
    t, n = count_params(model)
    w = max(8, *(len(r[0]) for r in rows))  # stage names: "fc" .. "classifier"
    rule = "-" * (w + 34)
    lines = [f"{'stage':<{w}} {'trainable':>11} {'total':>11}  status", rule]
    lines += [f"{s:<{w}} {a:>11,} {b:>11,}  {st}" for s, a, b, st in rows]
    lines += [rule, f"{'all':<{w}} {t:>11,} {n:>11,}  {t / n:.2%} trainable"]
    out = "\n".join(lines)
    if show:
        print(out)
        return None
    return out


def param_groups(model: nn.Module, lrs: dict[str, float], default_lr: float | None = None) -> list[dict]:
    """Optimizer parameter groups with one learning rate per stage, trainable parameters only.

    ``param_groups(model, {"layer4": 1e-4, "fc": 1e-3})``. Trainable parameters of stages not
    named go in one more group at ``default_lr`` (an error if there are some and it is None).
    """
    groups, seen = [], set()
    for stage, lr in lrs.items():
        ps = [p for p in stage_params(model, stage) if p.requires_grad and id(p) not in seen]
        if not ps:
            raise ValueError(f"Stage {stage!r} has no trainable parameters: unfreeze it first or leave it out.")
        seen.update(id(p) for p in ps)
        groups.append({"params": ps, "lr": lr, "name": stage})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        if default_lr is None:
            left = {id(p) for p in rest}
            names = [s for s in stage_names(model) if any(id(p) in left for p in stage_params(model, s))]
            raise ValueError(
                f"Trainable stages without a learning rate: {', '.join(names)}; add them or pass default_lr."
            )
        groups.append({"params": rest, "lr": default_lr, "name": "other"})
    return groups


def make_optimizer(
    model: nn.Module, name: str = "adam", lr: float = 1e-3, stage_lrs: dict[str, float] | None = None, **kwargs
) -> torch.optim.Optimizer:
    """An optimizer over the *trainable* parameters only (``adam``, ``adamw`` or ``sgd``).

    Frozen parameters never get optimizer state (Adam keeps two buffers per parameter).
    ``stage_lrs`` gives per-stage learning rates; other trainable stages use ``lr``.
    """
    if stage_lrs:
        params: Sequence = param_groups(model, stage_lrs, default_lr=lr)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters: unfreeze at least the head.")
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}.get(name.lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer {name!r}: use 'adam', 'adamw' or 'sgd'.")
    if cls is torch.optim.SGD:
        kwargs.setdefault("momentum", 0.9)
    return cls(params, lr=lr, **kwargs)
