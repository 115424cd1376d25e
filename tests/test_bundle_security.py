"""`bundle import` against hostile bundles: each is refused (exit 3), and nothing outside the cache changes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tlhelpers import settings
from tlhelpers.cli import BUNDLE_FORMAT, EXIT_MISSING, EXIT_REFUSED, main

SMALL_CAP = 1 << 20  # the cap the size cases run under (1 MiB)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def write_bundle(path: Path, members, files=None, manifest_raw: bytes | None = None, extra: dict | None = None) -> Path:
    """A bundle at ``path``: MANIFEST.json (``files``, by default each regular member's sha256), then ``members``."""
    if files is None:
        files = {i.name: _sha(d) for i, d in members if i.isreg()}
    raw = (
        manifest_raw or json.dumps({"format": BUNDLE_FORMAT, "created": "x", "files": files, **(extra or {})}).encode()
    )
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        tf.addfile(*_file("MANIFEST.json", raw)[:1], io.BytesIO(raw))
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def lying_header_bundle(path: Path, claimed: int, real: bytes) -> Path:
    """A tar whose one member's header claims ``claimed`` bytes, followed by ``real`` bytes of content."""
    write_bundle(path, [_file("cifar10-jpg/train/cat/a.jpg", real)])
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tf:
        m = tf.getmember("cifar10-jpg/train/cat/a.jpg")
    hdr = m.offset
    data[hdr + 124 : hdr + 136] = b"%011o\0" % claimed  # the size field
    data[hdr + 148 : hdr + 156] = b"        "
    data[hdr + 148 : hdr + 156] = b"%06o\0 " % sum(data[hdr : hdr + 512])  # the header checksum
    path.write_bytes(bytes(data))
    return path


def gzip_bomb(path: Path, size: int) -> Path:
    """A .tar.gz holding one honest member of ``size`` zero bytes (a few KB compressed)."""
    zeros = bytes(size)
    raw = json.dumps({"format": BUNDLE_FORMAT, "files": {"cifar10-jpg/train/cat/z.jpg": _sha(zeros)}}).encode()
    with gzip.open(path, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        tf.addfile(_file("MANIFEST.json", raw)[0], io.BytesIO(raw))
        tf.addfile(_file("cifar10-jpg/train/cat/z.jpg", zeros)[0], io.BytesIO(zeros))
    return path


# name -> (builder(tmp_path, outside) -> bundle path, expected exit code, expected reason fragment)
CASES = {
    "absolute sub-path key": (
        lambda t, out: write_bundle(t / "b.tar", [_file(f"cifar10-jpg/{out / 'abs.txt'}", b"pwned")]),
        EXIT_REFUSED,
        "is not a plain relative path",
    ),
    "'..' key": (
        lambda t, out: write_bundle(t / "b.tar", [_file("checkpoints/../x/hubconf.py", b"import os")]),
        EXIT_REFUSED,
        "is not a plain relative path",
    ),
    "symlink pointing out": (
        lambda t, out: write_bundle(
            t / "b.tar",
            [
                _link("cifar10-jpg/train/cat", "../../../../outside", tarfile.SYMTYPE),
                _file("cifar10-jpg/train/cat/evil.txt", b"pwned"),
            ],
        ),
        EXIT_REFUSED,
        "is a symbolic link",
    ),
    "symlink inside": (
        lambda t, out: write_bundle(
            t / "b.tar", [_file("cifar10-jpg/a.jpg", b"a"), _link("cifar10-jpg/b.jpg", "a.jpg", tarfile.SYMTYPE)]
        ),
        EXIT_REFUSED,
        "is a symbolic link",
    ),
    "hardlink": (
        lambda t, out: write_bundle(
            t / "b.tar",
            [_file("cifar10-jpg/a.jpg", b"a"), _link("cifar10-jpg/b.jpg", "cifar10-jpg/a.jpg", tarfile.LNKTYPE)],
        ),
        EXIT_REFUSED,
        "is a hard link",
    ),
    "fifo": (
        lambda t, out: write_bundle(t / "b.tar", [_link("cifar10-jpg/fifo", "", tarfile.FIFOTYPE)], files={}),
        EXIT_REFUSED,
        "is a FIFO",
    ),
    "character device": (
        lambda t, out: write_bundle(
            t / "b.tar", [_file("cifar10-jpg/a.jpg", b"a"), _link("cifar10-jpg/null", "", tarfile.CHRTYPE)]
        ),
        EXIT_REFUSED,
        "is a character device",
    ),
    "unlisted member": (
        lambda t, out: write_bundle(
            t / "b.tar",
            [_file("cifar10-jpg/a.jpg", b"a"), _file("checkpoints/extra.pth", b"x")],
            files={"cifar10-jpg/a.jpg": _sha(b"a")},
        ),
        EXIT_REFUSED,
        "'checkpoints/extra.pth' is not listed in its MANIFEST.json",
    ),
    "duplicate member": (
        lambda t, out: write_bundle(
            t / "b.tar",
            [_file("cifar10-jpg/a.jpg", b"a"), _file("cifar10-jpg/a.jpg", b"other")],
            files={"cifar10-jpg/a.jpg": _sha(b"a")},
        ),
        EXIT_REFUSED,
        "'cifar10-jpg/a.jpg' appears twice",
    ),
    "empty manifest": (
        lambda t, out: write_bundle(t / "b.tar", [], files={}),
        EXIT_REFUSED,
        "its MANIFEST.json lists no files",
    ),
    "files as a list": (
        lambda t, out: write_bundle(t / "b.tar", [_file("cifar10-jpg/a.jpg", b"a")], files=["cifar10-jpg/a.jpg"]),
        EXIT_REFUSED,
        "'files' in its MANIFEST.json is not a mapping",
    ),
    "short digest": (
        lambda t, out: write_bundle(
            t / "b.tar", [_file("cifar10-jpg/a.jpg", b"a")], files={"cifar10-jpg/a.jpg": "ab12"}
        ),
        EXIT_REFUSED,
        "is not a sha256 (64 hex digits)",
    ),
    "unknown root": (
        lambda t, out: write_bundle(t / "b.tar", [_file("hub/hubconf.py", b"import os")]),
        EXIT_REFUSED,
        "'hub/hubconf.py' is not inside one of checkpoints/, cifar10-jpg/, torchvision/",
    ),
    "checkpoint in a subfolder": (
        lambda t, out: write_bundle(t / "b.tar", [_file("checkpoints/x/hubconf.py", b"import os")]),
        EXIT_REFUSED,
        "'checkpoints/x/hubconf.py' is not inside one of",
    ),
    "gzip bomb over the cap": (
        lambda t, out: gzip_bomb(t / "b.tar.gz", 3 * SMALL_CAP),
        EXIT_REFUSED,
        "more than 1 MB",
    ),
    "too many files": (
        lambda t, out: write_bundle(t / "b.tar", [_file(f"cifar10-jpg/{i}.jpg", b"x") for i in range(6)]),
        EXIT_REFUSED,
        "more than 5 files",
    ),
    "header claims more than the cap": (
        lambda t, out: lying_header_bundle(t / "b.tar", 4 * SMALL_CAP, b"tiny"),
        EXIT_REFUSED,
        "more than 1 MB",
    ),
    "header claims less than its data": (
        lambda t, out: lying_header_bundle(t / "b.tar", 4, os.urandom(3 * SMALL_CAP)),
        EXIT_MISSING,
        "copy it again",
    ),
}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: kind, and content hash or link target (no mtimes: they prove nothing here)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_file():
            out[rel] = ("file", _sha(p.read_bytes()))
        elif p.is_dir():
            out[rel] = ("dir",)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache and torch hub under tmp_path/cache, an 'outside' folder beside it, small caps."""
    home, torch_home = tmp_path / "cache" / "home", tmp_path / "cache" / "torch"
    monkeypatch.setenv("TLHELPERS_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("TLHELPERS_CIFAR_DIR", raising=False)
    monkeypatch.setattr(settings, "BUNDLE_MAX_BYTES", SMALL_CAP)
    monkeypatch.setattr(settings, "BUNDLE_MAX_FILES", 5)
    (home / "cifar10-jpg").mkdir(parents=True)
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    return tmp_path, home, torch_home, outside


@pytest.mark.parametrize("case", CASES)
def test_hostile_bundle_is_refused_and_nothing_changes(cache, capsys, case):
    tmp_path, home, torch_home, outside = cache
    build, code, reason = CASES[case]
    bundle = build(tmp_path, outside)
    before = snapshot(tmp_path)
    assert main(["bundle", "import", str(bundle)]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert reason.lower() in err.lower(), err
    if code == EXIT_REFUSED:
        assert err.startswith(f"error: refused: {bundle} is not safe to import (")
        assert err.strip().endswith(
            "nothing was imported. Export a new bundle with `bundle export` on a machine you trust."
        )
    else:
        assert "nothing was imported" in err.lower()
    assert snapshot(tmp_path) == before, "a refused bundle changed files"


def test_valid_bundle_still_imports(cache, capsys):
    tmp_path, home, torch_home, outside = cache
    ckpt = b"weights"
    name = f"tiny-{_sha(ckpt)[:8]}.pth"
    members = [
        _file("cifar10-jpg/train/cat/0001.jpg", b"\xff\xd8 cat"),
        _file("torchvision/data_batch_1", b"batch"),
        _file(f"checkpoints/{name}", ckpt),
    ]
    bundle = write_bundle(tmp_path / "ok.tar.gz", members, extra={"sizes": {i.name: i.size for i, _ in members}})
    before = snapshot(outside)
    assert main(["bundle", "import", str(bundle)]) == 0
    assert "imported 3 files, sha256 verified" in capsys.readouterr().out
    assert (home / "cifar10-jpg" / "train" / "cat" / "0001.jpg").read_bytes() == b"\xff\xd8 cat"
    assert (home / "torchvision" / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"batch"
    assert (torch_home / "hub" / "checkpoints" / name).read_bytes() == ckpt
    assert snapshot(outside) == before
    assert not [p for p in home.iterdir() if p.name.startswith(".bundle-")], "the staging folder was left behind"


def test_manifest_sizes_must_match_the_headers(cache, capsys):
    tmp_path, *_ = cache
    bundle = write_bundle(
        tmp_path / "b.tar", [_file("cifar10-jpg/a.jpg", b"a")], extra={"sizes": {"cifar10-jpg/a.jpg": "1"}}
    )
    assert main(["bundle", "import", str(bundle)]) == EXIT_REFUSED
    assert "'sizes' in its MANIFEST.json" in capsys.readouterr().err


def test_a_link_already_in_the_cache_cannot_carry_files_out(cache, capsys):
    tmp_path, home, _, outside = cache
    (home / "cifar10-jpg" / "train").symlink_to(outside, target_is_directory=True)
    bundle = write_bundle(tmp_path / "b.tar", [_file("cifar10-jpg/train/x.jpg", b"x")])
    before = snapshot(tmp_path)
    assert main(["bundle", "import", str(bundle)]) == EXIT_REFUSED
    assert "'cifar10-jpg/train/x.jpg' would land outside" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_real_bytes_are_capped_while_extracting(cache, capsys, monkeypatch):
    """Second guard: the bytes actually read are counted too, whatever the headers said."""
    from tlhelpers import cli

    tmp_path, *_ = cache
    bundle = write_bundle(tmp_path / "b.tar", [_file("cifar10-jpg/a.jpg", bytes(SMALL_CAP // 2))])
    check = cli._check_bundle

    def check_then_lower_cap(*args):
        out = check(*args)
        monkeypatch.setattr(settings, "BUNDLE_MAX_BYTES", 1000)
        return out

    monkeypatch.setattr(cli, "_check_bundle", check_then_lower_cap)
    before = snapshot(tmp_path)
    assert main(["bundle", "import", str(bundle)]) == EXIT_REFUSED
    assert "it unpacks to more than 1,000 bytes" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_export_stores_a_symlinked_file_as_a_regular_file(cache, capsys, tmp_path, monkeypatch):
    """The import refuses links, so the export must never write one, even from a cache that has some."""
    _, home, _, outside = cache
    real = outside / "real.jpg"
    real.write_bytes(b"\xff\xd8 real")
    (home / "cifar10-jpg" / "train").mkdir()
    (home / "cifar10-jpg" / "train" / "linked.jpg").symlink_to(real)
    bundle = tmp_path / "mine.tar.gz"
    assert main(["bundle", "export", str(bundle)]) == 0
    with tarfile.open(bundle) as tf:
        assert all(m.isreg() for m in tf.getmembers())
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path / "other"))
    assert main(["bundle", "import", str(bundle)]) == 0
    assert (tmp_path / "other" / "cifar10-jpg" / "train" / "linked.jpg").read_bytes() == b"\xff\xd8 real"


def test_a_newer_format_asks_for_an_upgrade_not_a_copy(cache, capsys):
    tmp_path, *_ = cache
    raw = json.dumps({"format": "tlhelpers-bundle-2", "files": {"cifar10-jpg/a.jpg": _sha(b"a")}}).encode()
    bundle = write_bundle(tmp_path / "b.tar", [_file("cifar10-jpg/a.jpg", b"a")], manifest_raw=raw)
    before = snapshot(tmp_path)
    assert main(["bundle", "import", str(bundle)]) == EXIT_MISSING
    err = capsys.readouterr().err
    assert "it is a tlhelpers-bundle-2 bundle, made by a newer tlhelpers" in err and "Upgrade the course package" in err
    assert snapshot(tmp_path) == before
