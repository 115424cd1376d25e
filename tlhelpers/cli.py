"""Command line: ``python -m tlhelpers doctor | prefetch | bundle export/import | pretrain``.

* ``doctor``: versions, device, what is cached, what is missing and the remedy for each.
* ``prefetch``: download the ImageNet ResNet18 weights and CIFAR-10 into the cache (checksums
  verified by torchvision), or ``--archive cifar10-jpg.tar.gz`` to unpack the course's JPEG copy.
* ``bundle export FILE`` / ``bundle import FILE``: one file with the whole cache, for classrooms
  without network: an instructor exports it once and copies it to every student machine.
* ``pretrain``: rebuild the offline course backbone (see :mod:`tlhelpers.pretrain`).

Errors are one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

EXIT_MISSING = 2


def _fail(msg: str, code: int = EXIT_MISSING) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _status() -> list[tuple[str, bool, str, str]]:
    """(item, ok, detail, remedy) for everything the course can use."""
    from .data import cache_dir, cifar_dir
    from .models import _course_state_dict, course_backbone_info, imagenet_weights_path

    rows = []
    try:
        info = course_backbone_info()
        _course_state_dict()
        rows.append(("course backbone", True, f"sha256 ok, {info['source_test_accuracy']:.1%} source-task accuracy", ""))
    except Exception as e:
        rows.append(("course backbone", False, str(e).splitlines()[0], "reinstall tlhelpers (pip install -e .)"))
    w = imagenet_weights_path("resnet18")
    rows.append(("ImageNet ResNet18 weights", w.is_file(), str(w),
                 "python -m tlhelpers prefetch (needs internet), or import a classroom bundle; offline the course backbone is used"))
    cd = cifar_dir()
    ok = (cd / "train").is_dir() and (cd / "test").is_dir()
    rows.append(("CIFAR-10 (JPEG folder)", ok, str(cd), "python -m tlhelpers prefetch --archive cifar10-jpg.tar.gz"))
    tv = cache_dir() / "torchvision" / "cifar-10-batches-py"
    rows.append(("CIFAR-10 (torchvision)", tv.is_dir(), str(tv), "python -m tlhelpers prefetch (needs internet)"))
    return rows


def cmd_doctor(args) -> int:
    import torch
    import torchvision

    from . import __version__
    from .data import cache_dir
    from .device import fast_cpu_autocast, get_device

    print(f"tlhelpers {__version__} | Python {platform.python_version()} | torch {torch.__version__} | "
          f"torchvision {torchvision.__version__} | {platform.system()} {platform.machine()}")
    for mod in ("numpy", "sklearn", "matplotlib", "ipywidgets", "jupyterlab", "tqdm"):
        try:
            m = __import__(mod)
            print(f"  {mod} {getattr(m, '__version__', '?')}")
        except ImportError:
            print(f"  {mod} MISSING -> pip install -e .")
    get_device()
    print(f"  bfloat16 fast path on CPU: {'yes' if fast_cpu_autocast() else 'no'}")
    print(f"cache: {cache_dir()}   torch hub: {_hub_checkpoints().parent}")
    rows = _status()
    for item, ok, detail, remedy in rows:
        print(f"  [{'ok' if ok else 'missing'}] {item}: {detail}" + ("" if ok else f"\n      remedy: {remedy}"))
    data_ok = rows[2][1] or rows[3][1]
    if not rows[0][1] or not data_ok:
        print("The course cannot run yet: fix the items marked missing above.")
        return 1
    print("Ready: the notebooks can run" + ("" if rows[1][1] else " offline with the course backbone") + ".")
    return 0


def cmd_prefetch(args) -> int:
    from .data import cache_dir, cifar_dir, unpack_archive

    if args.archive:
        try:
            dest = unpack_archive(args.archive)
        except (FileNotFoundError, tarfile.TarError, StopIteration) as e:
            return _fail(f"cannot unpack {args.archive}: {e}")
        print(f"CIFAR-10 JPEG folder ready at {dest}")
        if args.data_only:
            return 0
    missing = []
    if not args.data_only:
        from .models import WeightsUnavailable, _imagenet_state_dict, imagenet_weights_path

        try:
            _imagenet_state_dict("resnet18")  # torchvision checks the sha256 prefix in the file name
            print(f"ImageNet ResNet18 weights ready at {imagenet_weights_path('resnet18')}")
        except WeightsUnavailable as e:
            missing.append(f"ImageNet ResNet18 weights -> copy resnet18-f37072fd.pth to {imagenet_weights_path('resnet18')} "
                           f"or import a bundle ({str(e).split('(')[1].split(')')[0]})")
    if not args.weights_only and not args.archive:
        from torchvision.datasets import CIFAR10

        root = cache_dir() / "torchvision"
        try:
            for train in (True, False):
                CIFAR10(str(root), train=train, download=True)  # md5-verified download and extraction
            print(f"CIFAR-10 ready at {root / 'cifar-10-batches-py'}")
        except Exception as e:
            missing.append(f"CIFAR-10 -> run again with internet, or `prefetch --archive cifar10-jpg.tar.gz` "
                           f"into {cifar_dir()} ({type(e).__name__})")
    if missing:
        for m in missing:
            print(f"missing: {m}", file=sys.stderr)
        return EXIT_MISSING
    return 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _bundle_sources() -> dict[str, Path]:
    from .data import cache_dir, cifar_dir

    return {"cifar10-jpg": cifar_dir(), "torchvision": cache_dir() / "torchvision", "checkpoints": _hub_checkpoints()}


def cmd_bundle(args) -> int:
    path = Path(args.file).expanduser()
    if args.action == "export":
        sources = {k: p for k, p in _bundle_sources().items() if p.is_dir() and any(p.iterdir())}
        if not sources:
            return _fail("nothing to export: the cache is empty (run `python -m tlhelpers prefetch` first)")
        manifest = {}
        for name, root in sources.items():
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    manifest[f"{name}/{f.relative_to(root).as_posix()}"] = _sha256(f)
        tmp = path.with_name(path.name + ".partial")
        with tarfile.open(tmp, "w") as tf:
            data = json.dumps({"format": "tlhelpers-bundle-1", "files": manifest}, indent=0).encode()
            info = tarfile.TarInfo("MANIFEST.json")
            info.size = len(data)
            import io
            tf.addfile(info, io.BytesIO(data))
            for name, root in sources.items():
                tf.add(root, arcname=name)
        tmp.replace(path)
        print(f"exported {len(manifest):,} files ({', '.join(sources)}) to {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    if not path.is_file():
        return _fail(f"bundle not found: {path}")
    targets = _bundle_sources()
    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmpdir, tarfile.open(path) as tf:
            tf.extractall(tmpdir, filter="data")
            tmp = Path(tmpdir)
            manifest = json.loads((tmp / "MANIFEST.json").read_text())
            if manifest.get("format") != "tlhelpers-bundle-1":
                return _fail(f"{path} is not a tlhelpers bundle")
            bad = [rel for rel, digest in manifest["files"].items()
                   if not (tmp / rel).is_file() or _sha256(tmp / rel) != digest]
            if bad:
                return _fail(f"bundle damaged: {len(bad)} files fail their checksum (first: {bad[0]}); export it again")
            for name in {rel.split("/")[0] for rel in manifest["files"]}:
                dest = targets[name]
                dest.parent.mkdir(parents=True, exist_ok=True)
                for f in (tmp / name).rglob("*"):
                    if f.is_file():
                        out = dest / f.relative_to(tmp / name)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.move(str(f), out)
        print(f"imported {len(manifest['files']):,} files into {', '.join(str(targets[n]) for n in sorted({r.split('/')[0] for r in manifest['files']}))}")
        return 0
    except (tarfile.TarError, json.JSONDecodeError, KeyError, OSError) as e:
        return _fail(f"cannot import {path}: {type(e).__name__}: {e}")


def cmd_pretrain(args) -> int:
    from .data import cifar_dir
    from .pretrain import pretrain

    if not (cifar_dir() / "train").is_dir():
        return _fail(f"pretraining needs the CIFAR-10 JPEG folder at {cifar_dir()}: "
                     "python -m tlhelpers prefetch --archive cifar10-jpg.tar.gz")
    pretrain(args.out, epochs=args.epochs, size=args.size, seed=args.seed, probe_every=args.probe_every)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tlhelpers", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("doctor", help="versions, device, cached data and weights, remedies").set_defaults(fn=cmd_doctor)
    pf = sub.add_parser("prefetch", help="download weights and CIFAR-10 into the cache, or unpack the JPEG archive")
    pf.add_argument("--archive", help="unpack this cifar10-jpg.tar.gz into the cache instead of downloading CIFAR-10")
    pf.add_argument("--data-only", action="store_true", help="skip the ImageNet weights")
    pf.add_argument("--weights-only", action="store_true", help="skip CIFAR-10")
    pf.set_defaults(fn=cmd_prefetch)
    b = sub.add_parser("bundle", help="export or import the whole cache as one file (classrooms without network)")
    b.add_argument("action", choices=["export", "import"])
    b.add_argument("file")
    b.set_defaults(fn=cmd_bundle)
    pt = sub.add_parser("pretrain", help="rebuild the offline course backbone")
    pt.add_argument("--out", default=str(Path(__file__).parent / "weights"))
    pt.add_argument("--epochs", type=int, default=16)
    pt.add_argument("--size", type=int, default=64)
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--probe-every", type=int, default=0)
    pt.set_defaults(fn=cmd_pretrain)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
