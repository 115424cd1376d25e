"""The stages of each architecture the course uses, in one registry that every stage-taking function reads.

A *stage* is a named group of modules (or, for a ViT's class token and position embedding, parameters),
from input to output, the last one being the linear head:

=================== ===========================================================================
ResNet (torchvision) ``stem`` (conv1 + bn1), ``layer1`` .. ``layer4``, ``fc``
EfficientNet (timm) ``stem`` (conv_stem + bn1), ``blocks.0`` .. ``blocks.6``, ``conv_head`` (+ bn2), ``classifier``
ConvNeXt            ``stem``, ``stage1`` .. ``stage4`` (each with the downsampling before it), ``classifier``
ViT                 ``embed`` (patch projection, class token, positions), ``block0`` .. ``block11``,
                    ``norm``, ``heads``
other models        their top-level children that hold parameters
=================== ===========================================================================

Each :class:`Layout` also names the stage where *partial fine-tuning* starts (the last block of
features: ``layer4``, ``blocks.6``, ``stage4``, ``block11``) and the *feature stages* whose outputs the
probes and :func:`tlhelpers.embed.stage_features` read by default. ``"head"`` is an alias of the last stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

__all__ = ["RESNET_STAGES", "Layout", "layout", "stage_names", "feature_stages", "partial_from", "stage_paths"]

RESNET_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "fc")


@dataclass(frozen=True)
class Layout:
    """An architecture's stages: ``{name: (module or parameter paths)}`` in order, the head last."""

    arch: str
    stages: dict[str, tuple[str, ...]]
    partial_from: str  # first stage that partial fine-tuning trains (the head and all stages after it train too)
    features: tuple[str, ...]  # stages whose pooled outputs the probes read by default
    generic: bool = False  # not a known architecture: its top-level children

    @property
    def names(self) -> list[str]:
        return list(self.stages)

    @property
    def head(self) -> str:
        return self.names[-1]


def _resnet(model: nn.Module) -> Layout:
    stages = {"stem": ("conv1", "bn1"), **{f"layer{i}": (f"layer{i}",) for i in range(1, 5)}, "fc": ("fc",)}
    return Layout("resnet", stages, "layer4", RESNET_STAGES[1:-1])


def _efficientnet(model: nn.Module) -> Layout:  # timm's EfficientNet (tf_efficientnet_lite0)
    n = len(model.blocks)
    blocks = {f"blocks.{i}": (f"blocks.{i}",) for i in range(n)}
    stages = {"stem": ("conv_stem", "bn1"), **blocks, "conv_head": ("conv_head", "bn2"), "classifier": ("classifier",)}
    return Layout("efficientnet", stages, f"blocks.{n - 1}", tuple(blocks)[1:])


def _convnext(model: nn.Module) -> Layout:  # torchvision: features = stem, stage, (downsample, stage) x 3
    stages = {"stem": ("features.0",), "stage1": ("features.1",)}
    stages |= {f"stage{i}": (f"features.{2 * i - 2}", f"features.{2 * i - 1}") for i in range(2, 5)}
    stages["classifier"] = ("classifier",)
    return Layout("convnext", stages, "stage4", ("stage1", "stage2", "stage3", "stage4"))


def _vit(model: nn.Module) -> Layout:  # torchvision VisionTransformer
    n = len(model.encoder.layers)
    blocks = {f"block{i}": (f"encoder.layers.encoder_layer_{i}",) for i in range(n)}
    stages = {"embed": ("conv_proj", "class_token", "encoder.pos_embedding"), **blocks}
    stages |= {"norm": ("encoder.ln",), "heads": ("heads",)}
    every = max(1, n // 4)
    return Layout("vit", stages, f"block{n - 1}", tuple(f"block{i}" for i in range(every - 1, n, every)))


def _generic(model: nn.Module) -> Layout:
    names = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
    last = names[-2] if len(names) > 1 else names[-1]
    return Layout(type(model).__name__, {n: (n,) for n in names}, last, (), generic=True)


def layout(model: nn.Module) -> Layout:
    """The :class:`Layout` of ``model``, recognised by its attributes (works on a model with a replaced head)."""
    has = lambda *names: all(hasattr(model, n) for n in names)  # noqa: E731
    if has("conv1", "bn1", "layer1", "layer4", "fc"):
        return _resnet(model)
    if has("conv_stem", "bn1", "blocks", "conv_head", "bn2", "classifier"):
        return _efficientnet(model)
    if has("conv_proj", "class_token", "encoder", "heads"):
        return _vit(model)
    if has("features", "classifier") and type(model).__name__ == "ConvNeXt":
        return _convnext(model)
    return _generic(model)


def stage_names(model: nn.Module) -> list[str]:
    """The stages of ``model`` from input to output (ResNet: stem, layer1..layer4, fc)."""
    return layout(model).names


def feature_stages(model: nn.Module) -> tuple[str, ...]:
    """The stages whose pooled outputs the probes read by default (ResNet: layer1..layer4)."""
    return layout(model).features


def partial_from(model: nn.Module) -> str:
    """The first stage partial fine-tuning trains (ResNet: ``layer4``)."""
    return layout(model).partial_from


def stage_paths(model: nn.Module, stage: str) -> tuple[str, ...]:
    """The module/parameter paths of ``stage``: a stage name, ``head``, or any dotted module name."""
    lay = layout(model)
    if stage == "head":
        if lay.generic:
            from .models import head_of

            return (head_of(model)[0],)
        stage = lay.head
    if stage in lay.stages:
        return lay.stages[stage]
    try:
        model.get_submodule(stage)
    except AttributeError:
        raise ValueError(f"Unknown stage {stage!r}. Stages of this model: {', '.join(lay.names)}.") from None
    return (stage,)
