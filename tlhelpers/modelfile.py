"""The saved-model file, read and written in one place (docs/model_format.md is its specification).

Every file tlhelpers loads weights from goes through :func:`read`: a model written by
:func:`tlhelpers.saving.save_model` (format ``tlhelpers-model/1``), or a bare state dict (with, optionally,
a ``.json`` beside it that gives its preprocessing). Files are read with ``torch.load(weights_only=True)``,
so loading never runs pickled code, and written through a temporary file, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch

from .errors import first_line

__all__ = ["FORMAT", "VERSION", "read", "write", "check_model", "preprocessing"]

NAME, VERSION = "tlhelpers-model", 1
FORMAT = f"{NAME}/{VERSION}"
REQUIRED = ("arch", "classes", "preprocessing")  # besides "format" and "state_dict"
WRAPPERS = ("state_dict", "model", "model_state_dict")  # keys under which files keep their weights


def write(path: str | os.PathLike, record: dict) -> Path:
    """``torch.save(record)`` to ``path`` through ``path.partial`` and a rename: never half a file."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(record, tmp)
    os.replace(tmp, path)
    return path


def read(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state dict, metadata)`` of a weights file, read with ``weights_only=True``.

    The state dict is unwrapped from ``{"state_dict"|"model"|"model_state_dict": ...}``, without
    DataParallel's ``module.`` prefix, floating tensors as float32. ``metadata`` is the rest of such a
    wrapping dict (what :func:`tlhelpers.saving.save_model` writes beside the weights), else ``{}``.
    A missing, damaged, unsafe or foreign file is one error that names it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise _unreadable(path, e) from None
        raise ValueError(
            f"{path} is not a plain tensor file (refused by weights_only for safety): it holds pickled Python "
            "objects, which could run code when loaded. Save weights with torch.save(model.state_dict(), path) "
            "or tl.save_model, or load it yourself only if you trust where it came from."
        ) from None
    except Exception as e:  # truncated zip, not a torch file at all
        raise _unreadable(path, e) from None
    sd, meta = raw, {}
    if isinstance(raw, dict):
        for key in WRAPPERS:
            if isinstance(raw.get(key), dict):
                sd, meta = raw[key], {k: v for k, v in raw.items() if k != key}
                break
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict (got {type(sd).__name__} of other things).")
    sd = {k.removeprefix("module."): (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    return sd, meta


def _unreadable(path: Path, e: Exception) -> ValueError:
    return ValueError(
        f"Cannot read checkpoint {path}: it is damaged or not a PyTorch file ({first_line(e)}). Copy it again."
    )


def check_model(meta: dict, path: Path) -> dict:
    """``meta`` if it describes a ``tlhelpers-model`` of this version with every field; else one error that
    names the file, and the version or the field, and what to do."""
    fmt = meta.get("format")
    if fmt is None:
        raise ValueError(
            f"{path} is a bare state dict, not a model saved by tl.save_model (no classes or preprocessing in "
            f"it): load it with tl.load_backbone(weights={str(path)!r}) and pass the right preprocessing."
        )
    name, _, version = str(fmt).partition("/")
    if name != NAME:
        raise ValueError(f"{path} has format {fmt!r}, not {FORMAT!r}: it was not written by tl.save_model.")
    if version != str(VERSION):
        raise ValueError(
            f"{path} is a {NAME} file of format version {version}; this tlhelpers reads version {VERSION}: "
            "load it with the tlhelpers that wrote it (or a newer one), or save the model again with this one."
        )
    for field in REQUIRED:
        if field not in meta:
            raise ValueError(
                f"{path} has no {field!r} field, which every {FORMAT} file has: save the model again with "
                "tl.save_model (docs/model_format.md lists the fields)."
            )
    classes = meta["classes"]
    if not isinstance(classes, (list, tuple)) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{path}: 'classes' must be a list of at least 2 class names, got {classes!r}.")
    preprocessing(meta, path)
    return meta


def preprocessing(meta: dict, path: Path) -> tuple[dict, str] | None:
    """``(record, where)``: the preprocessing a file carries, else that of the ``.json`` beside it (a bare
    state dict's), checked; None when there is neither. ``where`` says which, for the log."""
    if "preprocessing" in meta:
        record, where = meta["preprocessing"], "its own preprocessing"
    else:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            return None
        try:
            record, where = json.loads(sidecar.read_text())["preprocessing"], f"preprocessing from {sidecar.name}"
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{sidecar} has no readable 'preprocessing' ({first_line(e, with_type=True)}): fix it or remove it."
            ) from None
        path = sidecar
    _check_preprocessing(record, path)
    return record, where


def _check_preprocessing(p, path: Path) -> None:
    """A preprocessing record ``{"size", "resize_size"?, "mean", "std"}`` that can be used, or one error."""
    if not isinstance(p, dict) or not {"size", "mean", "std"} <= set(p):
        raise ValueError(f"{path}: its 'preprocessing' must have size, mean and std, got {p!r}.")
    for key in ("size", "resize_size"):
        v = p.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(
                f"{path}: its preprocessing has {key} {v!r}, not a whole number of pixels >= 1: save the model "
                "again with the preprocess tl.load_backbone returned."
            )
    for key in ("mean", "std"):
        v = p[key]
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
            raise ValueError(f"{path}: its preprocessing {key} must be 3 numbers (R, G, B), got {v!r}.")
    if min(p["std"]) <= 0:
        raise ValueError(f"{path}: its preprocessing std must be positive, got {p['std']!r}.")
