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
import torchvision

from . import modelfile
from .models import load_state_dict, preprocess_from, preprocess_record, replace_head

__all__ = ["save_model", "load_model", "MODEL_FORMAT"]

MODEL_FORMAT = modelfile.FORMAT  # docs/model_format.md


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    preprocess: nn.Module,
    classes: list[str] | tuple[str, ...],
    arch: str = "resnet18",
    training: dict | None = None,
) -> Path:
    """Write ``model`` with its ``arch``, ``classes``, ``preprocess`` and a ``training`` record to one file.

    ``training`` is any JSON-like dict (strategy, backbone weights, epochs, validation accuracy...).
    The file is written next to ``path`` first and then renamed, so a crash never leaves half a file.
    """
    path = Path(path).expanduser()
    classes = [str(c) for c in classes]
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    check = replace_head(torchvision.models.get_model(arch, weights=None), len(classes), seed=None)
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
        model = torchvision.models.get_model(arch, weights=None)
    except ValueError:
        raise ValueError(f"{path} holds an architecture this torchvision does not have: {arch!r}.") from None
    replace_head(model, len(classes), seed=None)
    load_state_dict(model, sd, path)
    info = {"arch": arch, "classes": classes, "training": meta.get("training", {})}
    return model.to(device).eval(), preprocess_from(meta["preprocessing"]), info
