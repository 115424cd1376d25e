"""Saving a trained model to one file and loading it back, anywhere, with nothing else from the notebook.

The file holds the weights *and* what is needed to use them: the architecture, the class names, the
preprocessing that goes with the weights, and how the model was trained. It is a plain dict saved with
``torch.save`` and read with ``torch.load(weights_only=True)``, so loading never runs pickled code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from . import modelfile
from .models import LITE0, LITE0_TIMM, _build, load_state_dict, preprocess_from, preprocess_record, replace_head

__all__ = ["save_model", "load_model", "MODEL_FORMAT"]

MODEL_FORMAT = modelfile.FORMAT  # docs/model_format.md


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    preprocess: nn.Module,
    classes: list[str] | tuple[str, ...],
    arch: str | None = None,
    training: dict | None = None,
) -> Path:
    """Write ``model`` with its ``arch``, ``classes``, ``preprocess`` and a ``training`` record to one file.

    ``arch`` names the architecture :func:`load_model` rebuilds: a torchvision name (``"resnet18"``) or
    ``"efficientnet_lite0"``; None: ``"efficientnet_lite0"`` for timm's Lite0, else ``"resnet18"``.
    ``training`` is any JSON-like dict (strategy, backbone weights, epochs, validation accuracy...).
    The file is written next to ``path`` first and then renamed, so a crash never leaves half a file.
    """
    path = Path(path).expanduser()
    classes = [str(c) for c in classes]
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    arch = arch or model_arch(model)
    check = replace_head(_build(arch), len(classes), seed=None)
    load_state_dict(check, sd, path)  # the weights must fit arch and the number of classes before we write them
    record = {
        "format": MODEL_FORMAT,
        "arch": arch,
        "classes": classes,
        "preprocessing": preprocess_record(preprocess),
        "training": _plain(training or {}, path),
        "torch": str(torch.__version__),
        "state_dict": sd,
    }
    return modelfile.write(path, record)


def model_arch(model: nn.Module) -> str:
    """The ``arch`` name of ``model`` as :func:`save_model` records it: Lite0 if timm built it, else resnet18."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return LITE0 if cfg.get("architecture") == LITE0_TIMM else "resnet18"


def _plain(record: dict, path: Path) -> dict:
    """``record`` as plain JSON types (what ``weights_only`` loading accepts): numbers, strings, lists, dicts."""
    try:
        return json.loads(json.dumps(record, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"The training record for {path.name} is not JSON-like: {e}") from None


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    """``(model, preprocess, info)`` from a file written by :func:`save_model`; the model is in eval mode.

    ``info`` has ``arch``, ``classes`` and ``training``. A plain state dict, a damaged or unsafe file, another
    format version, a missing field, another architecture or another number of classes is one error that
    names the file (the reading and checking is :mod:`tlhelpers.modelfile`'s).
    """
    path = Path(path).expanduser()
    sd, meta = modelfile.read(path)
    modelfile.check_model(meta, path)  # this format version, every field, a usable preprocessing
    arch, classes = meta["arch"], list(meta["classes"])
    try:
        model = _build(arch)  # torchvision's architectures, and timm's for efficientnet_lite0
    except ValueError:
        raise ValueError(f"{path} holds an architecture this torchvision does not have: {arch!r}.") from None
    replace_head(model, len(classes), seed=None)
    load_state_dict(model, sd, path)
    info = {"arch": arch, "classes": classes, "training": meta.get("training", {})}
    return model.to(device).eval(), preprocess_from(meta["preprocessing"]), info
