"""Unpacking the course's CIFAR-10 archive (``python -m tlhelpers prefetch --archive``): tar extraction only."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from .settings import cifar_dir

__all__ = ["safe_extract", "unpack_archive"]


def safe_extract(tf: tarfile.TarFile, dest: Path) -> None:
    """Extract ``tf`` into ``dest``, refusing members that would land outside it (absolute paths, '..',
    links, devices). Uses tarfile's "data" filter where Python has it (3.10.12+, 3.11.4+)."""
    if hasattr(tarfile, "data_filter"):
        tf.extractall(dest, filter="data")
        return
    for m in tf.getmembers():
        parts = Path(m.name).parts
        if Path(m.name).is_absolute() or ".." in parts or not (m.isfile() or m.isdir()):
            raise ValueError(f"refusing to unpack {m.name!r} from the archive: it is not a plain file inside it")
    tf.extractall(dest)


def unpack_archive(archive: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Unpack ``cifar10-jpg.tar.gz`` (train/ and test/ at its top) into ``dest`` (default :func:`cifar_dir`)."""
    archive, dest = Path(archive).expanduser(), Path(dest or cifar_dir()).expanduser()
    if not archive.is_file():
        raise FileNotFoundError(f"Archive not found: {archive}")
    if (dest / "train").is_dir() and (dest / "test").is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tf:
        safe_extract(tf, tmp)
    tops = [tmp, *(p for p in tmp.iterdir() if p.is_dir())]
    root = next((p for p in tops if (p / "train").is_dir() and (p / "test").is_dir()), None)
    if root is None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileNotFoundError(
            f"{archive} has no train/ and test/ folders (at its top or one folder down): "
            "it is not the course's cifar10-jpg.tar.gz."
        )
    root.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)  # what is left when the tree was one folder down
    return dest
