"""Shared fixtures. Tests run offline on the real CIFAR-10 images of the course archive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = Path(os.environ.get("TLHELPERS_ARCHIVE", ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The unpacked CIFAR-10 JPEG tree (unpacked from the course archive into the cache if needed)."""
    from tlhelpers.archive import unpack_archive
    from tlhelpers.settings import cifar_dir

    root = cifar_dir()
    if not (root / "train").is_dir():
        if not ARCHIVE.is_file():
            pytest.fail(
                f"CIFAR-10 JPEG tree missing at {root} and no archive at {ARCHIVE}: "
                "run `python -m tlhelpers prefetch --archive cifar10-jpg.tar.gz` (or set TLHELPERS_ARCHIVE)"
            )
        unpack_archive(ARCHIVE, root)
    return root


@pytest.fixture(scope="session")
def cat_dog(cifar_root):
    """A small balanced cat/dog split from the real images: 200 train, 200 test."""
    from tlhelpers import load_cifar_pair

    return load_cifar_pair(("cat", "dog"), n_train=200, n_test=200, seed=0, source="folder")


@pytest.fixture(autouse=True)
def _fresh_weights_state():
    """Each test starts as a new process would: no remembered download failure, no fallback announced yet."""
    from tlhelpers import models

    models._UNAVAILABLE.clear()
    models._FELL_BACK.clear()
    yield


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
