"""Command line: ``python -m tlhelpers doctor | prefetch | bundle export/import | pretrain | classroom``.

* ``doctor``: versions, device, what is cached, what is missing and the remedy for each.
  Exit 0 when the notebooks can run, 1 when something they need is missing.
* ``prefetch``: download the ImageNet ResNet18 weights and CIFAR-10 into the cache, with
  progress bars and checksum verification (sha256 prefix for the weights, md5 for CIFAR-10);
  ``--archive cifar10-jpg.tar.gz`` unpacks the course's JPEG copy of CIFAR-10 instead.
  Exit 2, with what is missing and how to get it, when something cannot be had.
* ``bundle export FILE`` / ``bundle import FILE``: the whole cache as one file for classrooms
  without network: an instructor exports it once and copies it to every student machine. Every
  file carries a sha256 in the bundle's manifest; a damaged bundle is rejected before anything
  is written (exit 2). A bundle that ``bundle export`` cannot have written (links, paths that leave
  the cache, files not in the manifest, over ``settings.BUNDLE_MAX_BYTES``/``BUNDLE_MAX_FILES``) is
  refused as unsafe (exit 3); every header is checked before anything is extracted.
* ``pretrain``: rebuild the offline course backbone (see :mod:`tlhelpers.pretrain`).

Where things go: ``$TLHELPERS_HOME`` (default ``~/.cache/tlhelpers``) for data, torch's hub
folder (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/...``) for weights.
Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import settings
from .errors import first_line

EXIT_NOT_READY = 1
EXIT_MISSING = 2
EXIT_REFUSED = 3  # a bundle that is not safe to import (hostile, not damaged)
BUNDLE_FORMAT = "tlhelpers-bundle-1"
CIFAR_SPLIT_SIZES = {"train": 50_000, "test": 10_000}
RUNTIME_DISTS = ("torch", "torchvision", "numpy", "scikit-learn", "matplotlib", "pillow", "tqdm", "ipywidgets")
BUNDLE_HINT = (
    "python -m tlhelpers bundle import tl-course.tar.gz   (a classroom bundle made on a machine with internet by "
    "`python -m tlhelpers prefetch && python -m tlhelpers bundle export tl-course.tar.gz`)"
)


def _remedy_lines(remedies, indent: str = "      ") -> str:
    """Remedies one per line: the first as ``remedy:``, the alternatives as ``or:``."""
    return "".join(f"\n{indent}{'remedy:' if i == 0 else '    or:'} {r}" for i, r in enumerate(remedies))


def _fail(msg: str, code: int = EXIT_MISSING) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _progress(iterable, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="file", leave=False, disable=total < 50)


# ---------------------------------------------------------------- where things live


def _archive_remedy() -> str:
    found = settings.archive()
    return f"python -m tlhelpers prefetch --archive {found or 'cifar10-jpg.tar.gz'}" + (
        "" if found else " (the course's JPEG copy)"
    )


def _cifar_folder_counts(root: Path) -> dict[str, int]:
    """Number of image files per split of the JPEG tree (0 if the split is missing); reads directory entries only."""
    counts = {}
    for split in CIFAR_SPLIT_SIZES:
        d = root / split
        counts[split] = sum(1 for c in os.scandir(d) if c.is_dir() for _ in os.scandir(c.path)) if d.is_dir() else 0
    return counts


def _cifar_folder_complete(root: Path) -> bool:
    counts = _cifar_folder_counts(root)
    return all(counts[s] >= n for s, n in CIFAR_SPLIT_SIZES.items())


def _torchvision_cifar_root() -> Path:
    return settings.torchvision_cifar_root()


def _torchvision_cifar_ok(root: Path) -> bool:
    """md5 of every batch file of torchvision's CIFAR-10 copy (what ``CIFAR10(download=False)`` checks)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    files = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    return all(check_integrity(str(root / CIFAR10.base_folder / name), md5) for name, md5 in files)


# ---------------------------------------------------------------- doctor


@dataclass
class Item:
    """One thing the course uses: whether it is here, where, and the ways to get it if not."""

    name: str
    ok: bool
    detail: str
    remedies: tuple[str, ...] = ()
    required: bool = True


def _weights_remedies(path: Path) -> tuple[str, ...]:
    import torchvision

    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return (
        "python -m tlhelpers prefetch   (needs internet)",
        BUNDLE_HINT,
        f"download {url} on any machine and copy it to {path}",
    )


def _cifar_remedies() -> tuple[str, ...]:
    return (_archive_remedy(), BUNDLE_HINT, "python -m tlhelpers prefetch   (needs internet)")


def status() -> list[Item]:
    """Everything the notebooks use, checked on disk (no network)."""
    from .models import course_backbone_info, course_state_dict, imagenet_weights_path

    cifar_dir = settings.cifar_dir
    items = []
    try:
        course_state_dict()
        info = course_backbone_info()
        note = " (PROVISIONAL development weights)" if info.get("name") == "PROVISIONAL" else ""
        items.append(
            Item(
                "course backbone",
                True,
                f"sha256 verified, {info['source_test_accuracy']:.1%} source-task accuracy{note}",
            )
        )
    except Exception as e:  # missing or damaged file in the package
        items.append(Item("course backbone", False, first_line(e), ("reinstall the course package: pip install -e .",)))

    show = settings.display_path
    w = imagenet_weights_path("resnet18")
    w_ok = settings.hub_file_ok(w)
    detail = (
        f"{show(w)} (sha256 verified)"
        if w_ok
        else (f"{show(w)} is damaged (checksum mismatch)" if w.is_file() else f"not at {show(w)}")
    )
    try:
        forced = settings.weights() == "course"
    except settings.SettingError:  # reported on its own [problem] line
        forced = False
    if forced:  # the setting, not the cache, decides: say so
        detail += "; the notebooks use the offline course backbone, forced by TLHELPERS_WEIGHTS=course"
    elif not w_ok:
        detail += "; until then the notebooks use the offline course backbone (announced)"
    items.append(
        Item(
            "ImageNet ResNet18 weights",
            w_ok,
            detail,
            _weights_remedies(w),
            required=False,
        )
    )

    try:  # the offline ImageNet backbone: timm + the weight file of its PyPI package, sha256 verified
        import importlib.util

        from .models import lite0_state_dict

        if importlib.util.find_spec("timm") is None:
            raise ImportError(f"timm is not installed: {settings.LITE0_INSTALL}")
        lite0_state_dict()
        lite = Item("EfficientNet-Lite0 ImageNet weights", True, f"{settings.lite0_weights_path()} (sha256 verified)")
    except Exception as e:
        lite = Item("EfficientNet-Lite0 ImageNet weights", False, first_line(e), (settings.LITE0_INSTALL,), False)
    items.append(lite)

    cd, tv = cifar_dir(), _torchvision_cifar_root()
    counts = _cifar_folder_counts(cd)
    if all(counts[s] >= n for s, n in CIFAR_SPLIT_SIZES.items()):
        items.append(
            Item(
                "CIFAR-10", True, f"JPEG folder {show(cd)} ({counts['train']:,} train / {counts['test']:,} test images)"
            )
        )
    elif (tv / "cifar-10-batches-py").is_dir() and _torchvision_cifar_ok(tv):
        items.append(Item("CIFAR-10", True, f"torchvision copy {show(tv / 'cifar-10-batches-py')} (md5 verified)"))
    else:
        partial = (
            f" (incomplete: {counts['train']:,} train / {counts['test']:,} test images)" if any(counts.values()) else ""
        )
        items.append(
            Item(
                "CIFAR-10",
                False,
                f"neither the JPEG folder {show(cd)}{partial} nor torchvision's copy "
                f"{show(tv / 'cifar-10-batches-py')} is here",
                _cifar_remedies(),
            )
        )
    return items


def _versions() -> list[tuple[str, str | None]]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in (
        "tlhelpers",
        "torch",
        "torchvision",
        "numpy",
        "scikit-learn",
        "matplotlib",
        "pillow",
        "tqdm",
        "ipywidgets",
        "jupyterlab",
        "jupyterlab_widgets",
        "ipykernel",
    ):
        try:
            out.append((dist, version(dist)))
        except PackageNotFoundError:
            out.append((dist, None))
    return out


def cmd_doctor(args) -> int:
    from .device import fast_cpu_autocast, get_device

    cache_dir, cifar_dir = settings.cache_dir(), settings.cifar_dir()
    show = settings.display_path
    print(f"Python {platform.python_version()} ({show(sys.executable)}) on {platform.system()} {platform.machine()}")
    versions = _versions()
    print("  " + ", ".join(f"{d} {v}" for d, v in versions if v))
    for dist, v in versions:
        if v is None:
            print(
                f"  [missing] {dist}"
                + ("" if dist in RUNTIME_DISTS else " (needed to open the notebooks in JupyterLab)")
                + _remedy_lines(['pip install -e ".[lab]"   (in the course folder)', "bash course.sh lab"])
            )
    bad_settings = settings.problems()  # the same checks the package makes when a notebook reads each setting
    for line in bad_settings:
        print(f"  [problem] {line}")
    blocking = [line.split("=")[0].lstrip("$") for line in bad_settings]
    if "TLHELPERS_DEVICE" not in blocking:
        try:
            get_device()
        except RuntimeError as e:  # $TLHELPERS_DEVICE names a device this machine lacks
            print(f"  [problem] {e}")
            blocking.append("TLHELPERS_DEVICE")
    print(f"  bfloat16 fast path on CPU: {'yes' if fast_cpu_autocast() else 'no'}")
    env = {k: v for k, v in os.environ.items() if k.startswith("TLHELPERS_") or k == "TORCH_HOME"}
    print(
        f"Cache: {show(cache_dir)} | CIFAR-10 folder: {show(cifar_dir)} | weights: {show(settings.hub_checkpoints())}"
    )
    if env:
        print("  settings: " + ", ".join(f"{k}={show(v) if '/' in v else v}" for k, v in sorted(env.items())))
    free = shutil.disk_usage(next(p for p in [cache_dir, *cache_dir.parents] if p.exists())).free
    print(f"  free disk space there: {free / 1e9:.1f} GB (the full cache takes about 0.5 GB)")
    items = status()
    for it in items:
        tag = "ok" if it.ok else ("missing" if it.required else "not cached")
        print(f"  [{tag}] {it.name}: {it.detail}" + ("" if it.ok else _remedy_lines(it.remedies)))
    missing = [it.name for it in items if it.required and not it.ok]
    missing += [d for d, v in versions if v is None and d in RUNTIME_DISTS]
    if blocking or missing:
        why = "; ".join(
            f"{verb} {', '.join(names)}" for verb, names in (("fix", blocking), ("missing", missing)) if names
        )
        print(
            f"Not ready: {why}. Apply the remedy printed for each, then run `bash course.sh doctor` "
            "(or `python -m tlhelpers doctor` in the course's environment) again."
        )
        return EXIT_NOT_READY
    imagenet = next(it for it in items if it.name.startswith("ImageNet")).ok
    print(
        "Ready: the notebooks can run"
        + ("." if imagenet else " offline, with the course backbone instead of ImageNet weights.")
    )
    return 0


# ---------------------------------------------------------------- prefetch


def _prefetch_weights() -> str | None:
    """Download (or verify) the ImageNet ResNet18 weights; return a 'missing' message or None."""
    import torch
    import torchvision

    from .models import imagenet_weights_path

    path = imagenet_weights_path("resnet18")
    if settings.hub_file_ok(path):
        print(f"ImageNet ResNet18 weights: present, sha256 verified ({path})")
        return None
    if path.is_file():
        print(f"ImageNet ResNet18 weights at {path} fail their checksum: downloading again")
        path.unlink()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    why = "offline mode ($TLHELPERS_OFFLINE is set)" if settings.offline() else None
    if why is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = settings.hub_hash_prefix(path.name)
        print(f"Downloading the ImageNet ResNet18 weights from {url} to {path}")
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=True)
            print(f"ImageNet ResNet18 weights: downloaded, sha256 verified ({path})")
            return None
        except Exception as e:  # URLError, timeouts, HTTP errors, hash mismatch
            why = f"download failed: {first_line(e, 100, with_type=True)}"
    return (
        f"ImageNet ResNet18 weights ({why}); until they are here the notebooks use the offline course backbone "
        "(and say so)" + _remedy_lines(_weights_remedies(path), "  ")
    )


def _prefetch_cifar() -> str | None:
    """Download (or verify) CIFAR-10 through torchvision, unless the JPEG folder is already complete."""
    cifar_dir = settings.cifar_dir
    if _cifar_folder_complete(cifar_dir()):
        print(f"CIFAR-10: the JPEG folder is complete ({cifar_dir()}); nothing to download")
        return None
    root = _torchvision_cifar_root()
    if (root / "cifar-10-batches-py").is_dir() and _torchvision_cifar_ok(root):
        print(f"CIFAR-10: present, md5 verified ({root / 'cifar-10-batches-py'})")
        return None
    why = "offline mode ($TLHELPERS_OFFLINE is set)" if settings.offline() else None
    if why is None:
        from torchvision.datasets import CIFAR10

        try:
            root.mkdir(parents=True, exist_ok=True)
            print(f"Downloading CIFAR-10 (170 MB) into {root}")
            CIFAR10(str(root), train=True, download=True)  # md5-verified download and extraction, with a progress bar
            (root / CIFAR10.filename).unlink(missing_ok=True)  # the extracted batches are all torchvision reads
            if not _torchvision_cifar_ok(root):
                raise RuntimeError("extracted files fail their md5 check")
            print(f"CIFAR-10: downloaded, md5 verified ({root / 'cifar-10-batches-py'})")
            return None
        except Exception as e:
            why = f"download failed: {first_line(e, 100, with_type=True)}"
    return f"CIFAR-10 ({why}); the notebooks cannot run without it" + _remedy_lines(_cifar_remedies(), "  ")


def cmd_prefetch(args) -> int:
    from .archive import unpack_archive

    if args.archive:
        try:
            dest = unpack_archive(args.archive)
        except (FileNotFoundError, tarfile.TarError, StopIteration, OSError, EOFError) as e:
            return _fail(f"cannot unpack {args.archive}: {e or type(e).__name__}")
        counts = _cifar_folder_counts(dest)
        print(f"CIFAR-10 JPEG folder ready at {dest} ({counts['train']:,} train / {counts['test']:,} test images)")
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(args.timeout)  # a firewalled network fails after this long instead of hanging
    try:
        missing = []
        if not args.data_only:
            missing.append(_prefetch_weights())
        if not args.weights_only and not args.archive:
            missing.append(_prefetch_cifar())
    finally:
        socket.setdefaulttimeout(old_timeout)
    missing = [m for m in missing if m]
    for m in missing:
        print(f"missing: {m}", file=sys.stderr)
    if missing:
        print(f"prefetch incomplete: {len(missing)} item(s) missing (see above).", file=sys.stderr)
        return EXIT_MISSING
    return 0


# ---------------------------------------------------------------- bundle


def _bundle_sources() -> dict[str, Path]:
    """Bundle section name -> cache folder it comes from and goes back to."""
    from torchvision.datasets import CIFAR10

    return {
        "cifar10-jpg": settings.cifar_dir(),
        "torchvision": _torchvision_cifar_root() / CIFAR10.base_folder,
        "checkpoints": settings.hub_checkpoints(),
    }


def _files_to_export() -> dict[str, Path]:
    """Bundle path ("section/relative/path") -> file on disk.

    Checkpoints: the torch hub files named ``<name>-<sha256 prefix>.<ext>`` (torchvision's convention)
    whose content matches that prefix; damaged ones are left out with a warning.
    """
    files = {}
    for section, root in _bundle_sources().items():
        if not root.is_dir():
            continue
        found = sorted(f for f in root.rglob("*") if f.is_file())
        if section == "checkpoints":
            named = [f for f in found if f.parent == root and settings.hub_hash_prefix(f.name)]
            found = [f for f in named if settings.hub_file_ok(f)]
            for f in sorted(set(named) - set(found)):
                print(f"warning: leaving out {f}: its content does not match the checksum in its name", file=sys.stderr)
        files.update({f"{section}/{f.relative_to(root).as_posix()}": f for f in found})
    return files


def bundle_export(path: Path) -> int:
    files = _files_to_export()
    if not files:
        return _fail("nothing to export: the cache is empty (run `python -m tlhelpers prefetch` first)")
    manifest = {rel: settings.sha256_file(f) for rel, f in _progress(files.items(), len(files), "checksums")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    # gzip mostly removes tar's per-file padding (60,000 small JPEGs: about 90 MB as .tar, 20 MB as .tar.gz)
    kwargs = {"mode": "w:gz", "compresslevel": 6} if path.name.endswith((".gz", ".tgz")) else {"mode": "w"}
    # dereference: a symlinked file in the cache goes in as a regular file (import refuses links of any kind)
    with tarfile.open(tmp, dereference=True, **kwargs) as tf:
        data = json.dumps(
            {
                "format": BUNDLE_FORMAT,
                "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "files": manifest,
                "sizes": {rel: f.stat().st_size for rel, f in files.items()},  # checked against the tar headers
            },
            indent=0,
        ).encode()
        info = tarfile.TarInfo("MANIFEST.json")
        info.size, info.mtime = len(data), int(time.time())
        tf.addfile(info, io.BytesIO(data))
        for rel, f in _progress(files.items(), len(files), "writing"):
            tf.add(f, arcname=rel, recursive=False)
    tmp.replace(path)
    sizes: dict[str, list[int]] = {}
    for rel, f in files.items():
        sizes.setdefault(rel.split("/")[0], []).append(f.stat().st_size)
    summary = ", ".join(f"{s}: {len(v):,} files, {sum(v) / 1e6:.1f} MB" for s, v in sorted(sizes.items()))
    print(f"exported {len(files):,} files to {path} ({path.stat().st_size / 1e6:.1f} MB; {summary})")
    print(f"on each student machine: python -m tlhelpers bundle import {path.name}")
    return 0


class BundleRefused(Exception):
    """A bundle that `bundle export` cannot have written: links, paths leaving the cache, caps exceeded, bad schema."""


class BundleDamaged(Exception):
    """A bundle that is truncated, corrupted in transit, or not a bundle at all."""


class BundleNewer(Exception):
    """A bundle in a later format than this tlhelpers reads."""


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n:,} bytes"


def _member_kind(m: tarfile.TarInfo) -> str | None:
    """None for a regular file or a folder, else what the member is (named in the refusal)."""
    if m.isreg() and not m.issparse():
        return None
    if m.isdir():
        return None
    kinds = [
        (m.issym, "a symbolic link"),
        (m.islnk, "a hard link"),
        (m.isfifo, "a FIFO"),
        (m.ischr, "a character device"),
    ]
    kinds += [(m.isblk, "a block device"), (m.issparse, "a sparse file")]
    return next((what for test, what in kinds if test()), f"of tar type {m.type!r}")


def _bundle_target(rel: object, roots: dict[str, Path]) -> Path:
    """Where a manifest key goes: refused unless a plain relative POSIX path inside a known root."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise BundleRefused(f"the key {rel!r} in its MANIFEST.json is not a plain relative path")
    p = PurePosixPath(rel)
    if p.is_absolute() or p.as_posix() != rel or any(part in ("", ".", "..") for part in p.parts):
        raise BundleRefused(f"the key {rel!r} in its MANIFEST.json is not a plain relative path")
    section = p.parts[0]
    # checkpoints: only files directly in torch hub's folder (never e.g. checkpoints/x/hubconf.py)
    if section not in roots or len(p.parts) < 2 or (section == "checkpoints" and len(p.parts) != 2):
        known = ", ".join(f"{s}/" for s in sorted(roots))
        folders = " (checkpoints/ holds no folders)" if section == "checkpoints" else ""
        raise BundleRefused(f"{rel!r} is not inside one of {known}{folders}")
    root = roots[section].resolve()
    out = (root / Path(*p.parts[1:])).resolve()
    if not out.is_relative_to(root) or out == root:
        raise BundleRefused(f"{rel!r} would land outside {root}")
    return out


def _read_manifest(tf: tarfile.TarFile, m: tarfile.TarInfo) -> tuple[dict[str, str], dict[str, int]]:
    """MANIFEST.json's files (path -> sha256) and sizes, checked: hostile if malformed, damaged if unreadable."""
    if _member_kind(m) or m.isdir():
        raise BundleRefused("its MANIFEST.json is not a regular file")
    if m.size > settings.BUNDLE_MAX_MANIFEST_BYTES:
        raise BundleRefused(f"its MANIFEST.json is larger than {_mb(settings.BUNDLE_MAX_MANIFEST_BYTES)}")
    raw = tf.extractfile(m).read(settings.BUNDLE_MAX_MANIFEST_BYTES + 1)
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise BundleDamaged(f"its MANIFEST.json is not valid JSON ({first_line(e)})") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if isinstance(fmt, str) and fmt.startswith("tlhelpers-bundle-") and fmt != BUNDLE_FORMAT:
        raise BundleNewer(f"it is a {fmt} bundle, made by a newer tlhelpers; this one reads {BUNDLE_FORMAT}")
    if fmt != BUNDLE_FORMAT:
        raise BundleDamaged(f"its MANIFEST.json is not a {BUNDLE_FORMAT} manifest")
    files = meta.get("files")
    if not isinstance(files, dict):
        raise BundleRefused("'files' in its MANIFEST.json is not a mapping of path to sha256")
    if not files:
        raise BundleRefused("its MANIFEST.json lists no files")
    for rel, digest in files.items():
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleRefused(f"the checksum of {rel!r} in its MANIFEST.json is not a sha256 (64 hex digits)")
    sizes = meta.get("sizes")
    if sizes is not None and not (
        isinstance(sizes, dict)
        and sizes.keys() == files.keys()
        and all(type(n) is int and n >= 0 for n in sizes.values())
    ):
        raise BundleRefused("'sizes' in its MANIFEST.json is not a size in bytes (int) for each file")
    return files, sizes or {}


def _check_bundle(tf: tarfile.TarFile, roots: dict[str, Path]):
    """Every header read and checked, nothing extracted: (manifest, targets, file members by key)."""
    members: dict[str, tarfile.TarInfo] = {}
    manifest_member = None
    total = count = 0
    for m in tf:  # headers one by one: a bomb is stopped at the first header past a cap, before its data is read
        if (kind := _member_kind(m)) is not None:
            raise BundleRefused(f"{m.name!r} is {kind}")
        if m.name == "MANIFEST.json":
            if manifest_member is not None:
                raise BundleRefused("'MANIFEST.json' appears twice")
            manifest_member = m
            continue
        if m.isdir():
            continue
        if m.name in members:
            raise BundleRefused(f"{m.name!r} appears twice")
        members[m.name] = m
        total, count = total + m.size, count + 1
        if count > settings.BUNDLE_MAX_FILES:
            raise BundleRefused(f"it holds more than {settings.BUNDLE_MAX_FILES:,} files")
        if total > settings.BUNDLE_MAX_BYTES:
            raise BundleRefused(f"it unpacks to more than {_mb(settings.BUNDLE_MAX_BYTES)}")
    if manifest_member is None:
        raise BundleDamaged("it is not a tlhelpers bundle (no MANIFEST.json)")
    files, sizes = _read_manifest(tf, manifest_member)
    targets = {rel: _bundle_target(rel, roots) for rel in files}
    if len(set(targets.values())) != len(targets):
        raise BundleRefused("two keys of its MANIFEST.json name the same file")
    for name, m in members.items():
        if name not in files:
            raise BundleRefused(f"{name!r} is not listed in its MANIFEST.json")
        if name in sizes and sizes[name] != m.size:
            raise BundleRefused(f"the tar header of {name!r} and its MANIFEST.json disagree on its size")
    return files, targets, members


def _extract_verified(tf, files, members, staging: Path) -> list[str]:
    """Stream each listed member into ``staging`` (``staging/<index in files>``), hashing as it goes, in the
    tar's own order (one forward pass through a compressed stream); return the keys missing or failing."""
    index = {rel: i for i, rel in enumerate(files)}
    bad, total = sorted(set(files) - set(members)), 0
    present = sorted((m.offset, rel) for rel, m in members.items())
    for _, rel in _progress(present, len(present), "verifying"):
        m = members[rel]
        h, n = hashlib.sha256(), 0
        src = tf.extractfile(m)
        with open(staging / str(index[rel]), "xb") as out:
            while chunk := src.read(1 << 20):
                n, total = n + len(chunk), total + len(chunk)
                if total > settings.BUNDLE_MAX_BYTES:
                    raise BundleRefused(f"it unpacks to more than {_mb(settings.BUNDLE_MAX_BYTES)}")
                h.update(chunk)
                out.write(chunk)
        if n != m.size or h.hexdigest() != files[rel]:
            bad.append(rel)
    return bad


def bundle_import(path: Path) -> int:
    if not path.is_file():
        return _fail(f"bundle not found: {path}")
    roots = _bundle_sources()
    cache = settings.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    print(f"checking every header of {path.name} before anything is written (60,000 files: about a minute)")
    try:
        with tempfile.TemporaryDirectory(dir=cache, prefix=".bundle-") as tmpdir, tarfile.open(path) as tf:
            staging = Path(tmpdir)
            files, targets, members = _check_bundle(tf, roots)
            bad = _extract_verified(tf, files, members, staging)
            if bad:
                return _fail(
                    f"bundle damaged: {len(bad):,} of {len(files):,} files missing or failing their sha256 "
                    f"(first: {bad[0]}); nothing was imported. Copy it again or export a new one"
                )
            for i, rel in enumerate(files):  # everything verified: now move into place
                out = targets[rel]
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(staging / str(i)), out)
    except BundleRefused as e:
        return _fail(
            f"refused: {path} is not safe to import ({e}); nothing was imported. "
            "Export a new bundle with `bundle export` on a machine you trust.",
            EXIT_REFUSED,
        )
    except BundleNewer as e:
        return _fail(f"cannot use bundle {path}: {e}. Upgrade the course package (git pull, then pip install -e .)")
    except BundleDamaged as e:
        return _fail(f"cannot use bundle {path}: {e}; copy it again or export a new one. Nothing was imported")
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as e:
        why = first_line(e).rstrip(":")
        return _fail(
            f"cannot read bundle {path} ({why}); it is truncated or not a bundle: "
            "copy it again or export a new one. Nothing was imported"
        )
    sections = sorted({rel.split("/")[0] for rel in files})
    print(f"imported {len(files):,} files, sha256 verified: " + ", ".join(f"{s} -> {roots[s]}" for s in sections))
    print("check with: python -m tlhelpers doctor")
    return 0


def cmd_bundle(args) -> int:
    path = Path(args.file).expanduser()
    return bundle_export(path) if args.action == "export" else bundle_import(path)


# ---------------------------------------------------------------- pretrain


def cmd_pretrain(args) -> int:
    from .pretrain import pretrain

    cifar_dir = settings.cifar_dir
    if not (cifar_dir() / "train").is_dir():
        return _fail(f"pretraining needs the CIFAR-10 JPEG folder at {cifar_dir()}: {_archive_remedy()}")
    pretrain(args.out, epochs=args.epochs, size=args.size, seed=args.seed, probe_every=args.probe_every)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tlhelpers",
        description=__doc__.splitlines()[0],
        epilog="Details: README.md, section 'Launch routes'.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("doctor", help="versions, device, cached data and weights, remedies").set_defaults(fn=cmd_doctor)
    pf = sub.add_parser("prefetch", help="download weights and CIFAR-10 into the cache, or unpack the JPEG archive")
    pf.add_argument("--archive", help="unpack this cifar10-jpg.tar.gz into the cache instead of downloading CIFAR-10")
    pf.add_argument("--data-only", action="store_true", help="skip the ImageNet weights")
    pf.add_argument("--weights-only", action="store_true", help="skip CIFAR-10")
    pf.add_argument("--timeout", type=float, default=60, help="network timeout in seconds (default 60)")
    pf.set_defaults(fn=cmd_prefetch)
    b = sub.add_parser("bundle", help="export or import the whole cache as one file (classrooms without network)")
    b.add_argument("action", choices=["export", "import"])
    b.add_argument(
        "file", help="the bundle file, e.g. tl-course.tar.gz (gzip-compressed; a .tar name writes it uncompressed)"
    )
    b.set_defaults(fn=cmd_bundle)
    pt = sub.add_parser("pretrain", help="rebuild the offline course backbone")
    pt.add_argument("--out", default=str(Path(__file__).parent / "weights"))
    pt.add_argument("--epochs", type=int, default=16)
    pt.add_argument("--size", type=int, default=64)
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--probe-every", type=int, default=0)
    pt.set_defaults(fn=cmd_pretrain)
    from .classroom import add_cli

    add_cli(sub)  # classroom build | grade | verify | plan (tlhelpers/classroom.py)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except settings.SettingError as e:  # a TLHELPERS_* variable the package cannot use: one line, no traceback
        return _fail(str(e), EXIT_NOT_READY)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
