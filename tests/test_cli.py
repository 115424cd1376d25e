"""`python -m tlhelpers doctor | prefetch | bundle`: offline messages, exit codes, bundle round trip."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tlhelpers.cli import EXIT_MISSING, EXIT_NOT_READY, main
from tlhelpers.settings import display_path

DEAD_PROXY = "http://127.0.0.1:9"  # connection refused at once: no download can succeed, even where CI has network


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Empty caches, no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLHELPERS_") and "proxy" not in k.lower()}
    env.update(
        TLHELPERS_HOME=str(tmp_path / "home"),
        TORCH_HOME=str(tmp_path / "torch"),
        http_proxy=DEAD_PROXY,
        https_proxy=DEAD_PROXY,
        HTTP_PROXY=DEAD_PROXY,
        HTTPS_PROXY=DEAD_PROXY,
        no_proxy="",
        NO_PROXY="",
        MPLBACKEND="Agg",
        **extra,
    )
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "tlhelpers", *args], env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


def files_under(*roots: Path) -> list[Path]:
    return sorted(p for r in roots if r.exists() for p in r.rglob("*") if p.is_file())


# ---------------------------------------------------------------- doctor and prefetch, offline


def test_doctor_offline_empty_cache_names_what_is_missing(tmp_path):
    r = run_cli(offline_env(tmp_path), "doctor")
    assert r.returncode == EXIT_NOT_READY
    out = r.stdout
    assert "torch 2." in out and "Using device:" in out
    weights = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "[ok] course backbone: sha256 verified" in out
    assert f"[not cached] ImageNet ResNet18 weights: not at {display_path(weights)}" in out
    assert f"[missing] CIFAR-10: neither the JPEG folder {display_path(tmp_path / 'home' / 'cifar10-jpg')}" in out
    assert "remedy: python -m tlhelpers prefetch --archive" in out and "bundle import" in out
    assert out.rstrip().splitlines()[-1].startswith("Not ready: missing CIFAR-10.")


def test_doctor_says_when_the_setting_forces_the_course_backbone(tmp_path):
    out = run_cli(offline_env(tmp_path, TLHELPERS_WEIGHTS="course"), "doctor").stdout
    assert "forced by TLHELPERS_WEIGHTS=course" in out and "until then" not in out


def test_prefetch_offline_says_what_is_missing_and_exits_nonzero(tmp_path):
    r = run_cli(offline_env(tmp_path), "prefetch", "--timeout", "10")
    assert r.returncode == EXIT_MISSING
    err = r.stderr
    weights = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert "missing: ImageNet ResNet18 weights (download failed: URLError" in err
    assert f"copy it to {weights}" in err and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in err
    assert "missing: CIFAR-10 (download failed" in err and "prefetch --archive" in err
    assert "python -m tlhelpers bundle import" in err
    assert err.rstrip().endswith("prefetch incomplete: 2 item(s) missing (see above).")
    assert files_under(tmp_path / "torch") == [], "a failed download left files behind"


def test_damaged_weights_are_reported_and_removed(tmp_path):
    weights = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not a checkpoint")
    env = offline_env(tmp_path, TLHELPERS_OFFLINE="1")
    r = run_cli(env, "doctor")
    assert f"{display_path(weights)} is damaged (checksum mismatch)" in r.stdout
    r = run_cli(env, "prefetch", "--weights-only")
    assert r.returncode == EXIT_MISSING
    assert "fail their checksum" in r.stdout and "offline mode ($TLHELPERS_OFFLINE is set)" in r.stderr
    assert not weights.exists()


def test_doctor_ready_offline_with_the_jpeg_tree(tmp_path, cifar_root):
    r = run_cli(offline_env(tmp_path, TLHELPERS_CIFAR_DIR=str(cifar_root)), "doctor")
    assert r.returncode == 0, r.stdout
    assert f"[ok] CIFAR-10: JPEG folder {display_path(cifar_root)} (50,000 train / 10,000 test images)" in r.stdout
    assert r.stdout.rstrip().endswith(
        "Ready: the notebooks can run offline, with the course backbone instead of ImageNet weights."
    )


# ---------------------------------------------------------------- prefetch --archive (what course.sh uses)


def _tiny_jpeg_archive(path: Path) -> None:
    from PIL import Image

    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "test"):
            for cls in ("cat", "dog"):
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), (10, 20, 30)).save(buf, "JPEG")
                info = tarfile.TarInfo(f"cifar10-jpg/{split}/{cls}/0001.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tf.addfile(info, buf)


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Point the cache and torch's hub at empty folders (in this process)."""

    def use(name: str) -> tuple[Path, Path]:
        home, torch_home = tmp_path / name / "home", tmp_path / name / "torch"
        monkeypatch.setenv("TLHELPERS_HOME", str(home))
        monkeypatch.setenv("TORCH_HOME", str(torch_home))
        monkeypatch.delenv("TLHELPERS_CIFAR_DIR", raising=False)
        import torch

        assert Path(torch.hub.get_dir()) == torch_home / "hub"
        return home, torch_home / "hub" / "checkpoints"

    return use


def test_prefetch_archive_data_only_unpacks_the_jpeg_tree(tmp_path, homes, capsys):
    home, _ = homes("a")
    archive = tmp_path / "cifar10-jpg.tar.gz"
    _tiny_jpeg_archive(archive)
    assert main(["prefetch", "--archive", str(archive), "--data-only"]) == 0
    assert "(2 train / 2 test images)" in capsys.readouterr().out
    assert (
        len(files_under(home / "cifar10-jpg" / "train")) == 2 and len(files_under(home / "cifar10-jpg" / "test")) == 2
    )
    assert main(["prefetch", "--archive", str(tmp_path / "nope.tar.gz"), "--data-only"]) == EXIT_MISSING
    assert "error: cannot unpack" in capsys.readouterr().err


# ---------------------------------------------------------------- bundle export / import


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def filled_cache(homes):
    """A small cache: a JPEG tree, torchvision's batches, one good and one damaged checkpoint."""
    home, ckpt = homes("src")
    contents = {
        home / "cifar10-jpg" / "train" / "cat" / "0001.jpg": b"\xff\xd8 cat",
        home / "cifar10-jpg" / "test" / "dog" / "0002.jpg": b"\xff\xd8 dog",
        home / "torchvision" / "cifar-10-batches-py" / "data_batch_1": os.urandom(4096),
    }
    good = b"tiny weights"
    contents[ckpt / f"tiny-{hashlib.sha256(good).hexdigest()[:8]}.pth"] = good
    for p, data in contents.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    damaged = ckpt / "resnet18-f37072fd.pth"
    damaged.write_bytes(b"damaged")
    (home / "torchvision" / "cifar-10-python.tar.gz").write_bytes(b"the download archive, not needed once extracted")
    return home, ckpt


@pytest.mark.parametrize("name", ["tl-course.tar", "tl-course.tar.gz"])
def test_bundle_round_trip_verifies_checksums(tmp_path, homes, filled_cache, capsys, name):
    src_home, src_ckpt = filled_cache
    bundle = tmp_path / name
    assert main(["bundle", "export", str(bundle)]) == 0
    out, err = capsys.readouterr()
    assert "exported 4 files" in out and "leaving out" in err and "resnet18-f37072fd.pth" in err
    with open(bundle, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == name.endswith(".gz")  # gzip magic only when asked for
    expected = {
        p.relative_to(src_home): _sha(p)
        for p in files_under(src_home / "cifar10-jpg", src_home / "torchvision" / "cifar-10-batches-py")
    }
    expected_ckpt = {p.name: _sha(p) for p in files_under(src_ckpt) if p.name.startswith("tiny-")}

    home, ckpt = homes("dst")
    assert main(["bundle", "import", str(bundle)]) == 0
    assert "imported 4 files, sha256 verified" in capsys.readouterr().out
    got = {p.relative_to(home): _sha(p) for p in files_under(home) if ".bundle-" not in str(p)}
    assert got == expected
    assert {p.name: _sha(p) for p in files_under(ckpt)} == expected_ckpt  # the damaged checkpoint was not carried


def _corrupt_member(src: Path, dst: Path, member: str) -> None:
    data = bytearray(src.read_bytes())
    with tarfile.open(src) as tf:
        offset = tf.getmember(member).offset_data
    data[offset] ^= 0xFF
    dst.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "no manifest"])
def test_damaged_bundle_is_rejected_and_nothing_is_imported(tmp_path, homes, filled_cache, capsys, damage):
    bundle, bad = tmp_path / "tl-course.tar", tmp_path / "bad.tar"
    assert main(["bundle", "export", str(bundle)]) == 0
    if damage == "flipped byte":
        _corrupt_member(bundle, bad, "cifar10-jpg/train/cat/0001.jpg")
        expected = (
            "error: bundle damaged: 1 of 4 files missing or failing their sha256 "
            "(first: cifar10-jpg/train/cat/0001.jpg)"
        )
    elif damage == "truncated":
        bad.write_bytes(bundle.read_bytes()[:3000])
        expected = "error: "
    else:
        with tarfile.open(bad, "w") as tf:
            tf.add(bundle, arcname="something.tar")
        expected = "is not a tlhelpers bundle"
    capsys.readouterr()
    home, ckpt = homes("dst")
    assert main(["bundle", "import", str(bad)]) == EXIT_MISSING
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert files_under(home, ckpt) == [], "a rejected bundle wrote files"


def test_bundle_errors_on_empty_cache_and_missing_file(tmp_path, homes, capsys):
    homes("empty")
    assert main(["bundle", "export", str(tmp_path / "b.tar")]) == EXIT_MISSING
    assert "nothing to export" in capsys.readouterr().err and not (tmp_path / "b.tar").exists()
    assert main(["bundle", "import", str(tmp_path / "missing.tar")]) == EXIT_MISSING
    assert "bundle not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, value, expected",
    [
        (
            "TLHELPERS_DEVICE",
            "cuda",
            "[problem] Device 'cuda' was asked for ($TLHELPERS_DEVICE), but this machine has no CUDA GPU",
        ),
        ("TLHELPERS_DEVICE", "tpu", "[problem] $TLHELPERS_DEVICE='tpu' is not a device: set it to cpu, cuda"),
        ("TLHELPERS_QUICK", "maybe", "[problem] $TLHELPERS_QUICK='maybe' is not a yes/no value: use 1/true/yes/on"),
        ("TLHELPERS_OFFLINE", "perhaps", "[problem] $TLHELPERS_OFFLINE='perhaps' is not a yes/no value"),
        ("TLHELPERS_DATA_SOURCE", "web", "[problem] $TLHELPERS_DATA_SOURCE='web' is not a data source"),
        ("TLHELPERS_WEIGHTS", "imagenet21k", "[problem] $TLHELPERS_WEIGHTS='imagenet21k' is neither auto"),
    ],
)
def test_doctor_refuses_settings_the_package_refuses(tmp_path, cifar_root, monkeypatch, capsys, name, value, expected):
    """Otherwise ready (JPEG tree, offline): one bad variable makes doctor say which, and exit 1."""
    import torch

    from tlhelpers import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for k, v in offline_env(tmp_path, TLHELPERS_CIFAR_DIR=str(cifar_root), TLHELPERS_OFFLINE="1").items():
        if k.startswith(("TLHELPERS_", "TORCH_HOME")):
            monkeypatch.setenv(k, v)
    assert cli.main(["doctor"]) == 0, capsys.readouterr().out
    capsys.readouterr()
    monkeypatch.setenv(name, value)
    assert cli.main(["doctor"]) == EXIT_NOT_READY
    out = capsys.readouterr().out
    assert expected in out, out
    assert f"Not ready: fix {name}. Apply the remedy" in out


def test_doctor_accepts_cpu_in_any_case(tmp_path, cifar_root, monkeypatch, capsys):
    from tlhelpers import cli

    for k, v in offline_env(tmp_path, TLHELPERS_CIFAR_DIR=str(cifar_root), TLHELPERS_DEVICE="CPU").items():
        if k.startswith(("TLHELPERS_", "TORCH_HOME")):
            monkeypatch.setenv(k, v)
    assert cli.main(["doctor"]) == 0
    assert "Using device: cpu" in capsys.readouterr().out


def test_other_commands_refuse_a_bad_setting_in_one_line(tmp_path):
    r = run_cli(offline_env(tmp_path, TLHELPERS_OFFLINE="perhaps"), "prefetch", "--weights-only")
    assert r.returncode == EXIT_NOT_READY
    assert r.stderr.strip() == (
        "error: $TLHELPERS_OFFLINE='perhaps' is not a yes/no value: use 1/true/yes/on or 0/false/no/off."
    )
