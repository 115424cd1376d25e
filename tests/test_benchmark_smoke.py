"""Smoke tests of the benchmarks (perf_workflow, perf_runs, load_photos, peers): tiny sizes, sane results.

Checks the result files' structure and sanity, never timings (CI machines vary).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "perf_workflow.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("perf_workflow", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_anchor_selection_is_first_cats_and_dogs(cifar_root):
    bench = _bench_module()
    files, labels = bench.anchor_selection(cifar_root, "test", 50)
    assert len(files) == len(labels) == 50 and len(set(files)) == 50
    folders = [Path(f).parent.name for f in files]
    assert [("cat", "dog")[i] for i in labels.tolist()] == folders  # label 0 = cat, 1 = dog, from the folder
    more, _ = bench.anchor_selection(cifar_root, "test", 80)
    assert more[:50] == files  # "first n" of one fixed order, as the anchor's [:n]


def test_course_side_writes_sane_results(cifar_root, tmp_path):
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--course-only",
        "--no-ablation",
        "--n-train",
        "40",
        "--n-test",
        "20",
        "--sizes",
        "16",
        "--seeds",
        "2",
        "--jpeg-root",
        str(cifar_root),
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads((tmp_path / "perf.json").read_text())
    assert "anchor" not in r and r["config"]["n_train"] == 40
    for key in ("course", "course_native"):
        c = r[key]
        p = c["phases"]
        assert set(p) == {"filter", "setup", "train_1_epoch", "eval", "total"}
        assert all(math.isfinite(v) and v > 0 for v in p.values())
        assert p["total"] >= p["filter"] + p["train_1_epoch"] + p["eval"]
        assert c["n_train"] == 40 and c["n_test"] == 20
        assert 0.0 <= c["test_accuracy"] <= 1.0 and 100 < c["peak_rss_mb"] < 100_000
        assert len(c["accuracy_by_seed"]["epochs_10"]) == 2
    assert r["course"]["image_size"] == 224 and r["course_native"]["image_size"] != 224
    assert r["course"]["train_10_epochs"] >= r["course"]["embed_train"]
    assert {"ten_epochs_over_one", "course_peak_rss_gb"} <= set(r["targets"])
    assert all(isinstance(t["met"], bool) for t in r["targets"].values())
    rows = r["scaling"]["course"]
    assert [x["n_train"] for x in rows] == [16] and rows[0]["total"] > 0
    assert (tmp_path / "perf_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "perf.md").read_text()
    assert "| course (tlhelpers) |" in md and "ten_epochs_over_one" in md


def test_perf_runs_tabulates_every_kept_run():
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("perf_runs", root / "benchmarks" / "perf_runs.py")
    perf_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_runs)
    kept = [root / "benchmarks/results/perf.json", *(root / "benchmarks/results/earlier_runs").glob("*/perf.json")]
    rows = perf_runs.rows()
    assert len(rows) == len(kept) >= 1
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    assert all(r["anchor_s"] / r["course_s"] == pytest.approx(r["speedup"], rel=1e-6) for r in rows)
    md = perf_runs.markdown(rows)
    assert md.count("\n| 20") == len(rows) and "perf.md (latest)" in md


def test_load_photos_benchmark_runs_and_both_methods_agree(tmp_path):
    """benchmarks/load_photos.py at a tiny size: every method loads every photo, and the images agree."""
    env = {**os.environ, "TLHELPERS_HOME": str(tmp_path)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "load_photos.py"), "--n", "6", "--photo-size", "640x480"]
    out = subprocess.run(cmd + ["--size", "64", "--no-write"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("| ") and "method" not in ln]
    assert len(rows) == 4
    diff = float(out.stdout.split("mean absolute pixel difference ")[1].split()[0])
    assert diff < 12  # draft-mode decoding + one resize gives the same pictures as a full decode + Resize
    assert len(list((tmp_path / "bench-photos-640x480-6").rglob("*.jpg"))) == 6
    for r in rows:
        seconds, per_second = (float(c) for c in r.split("|")[2:4])
        assert seconds >= 0 and per_second > 0


PEERS = ROOT / "benchmarks" / "peers.py"


def _peers(tmp_path, *extra: str) -> dict:
    """Run ``peers.py --tiny`` into ``tmp_path`` and return its results file."""
    cmd = [sys.executable, str(PEERS), "--tiny", "--out", str(tmp_path), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((tmp_path / "peers.json").read_text())


def _sane(row: dict) -> None:
    assert 0 < row["training_s"] <= row["total_s"] and 100 < row["peak_rss_mb"] < 100_000
    assert 0.0 <= row["test_acc"] <= 1.0 and 0.0 <= row["test_acc_se"] <= 0.5


def test_peers_course_side_tiny(tmp_path, cifar_root):
    """peers.py --tiny --no-fastai: the course's two recipes on both backbones, the floor, the levers, the tables."""
    pytest.importorskip("timm")
    r = _peers(tmp_path, "--no-fastai")
    assert r["fastai"] is None and r["config"]["n_fit"] + r["config"]["n_val"] == r["config"]["n_train"] == 20
    assert list(r["backbones"]) == ["resnet18", "lite0"]
    for b in r["backbones"].values():
        assert list(b["strategies"]) == ["course_fe", "course_ft"] and b["size"] == 32
        for row in b["strategies"].values():
            _sane(row)
        parts = b["strategies"]["course_fe"]["parts"]
        assert all(parts[f"{k}_s"] >= 0 for k in ("decode", "build", "forward", "fit_head"))
        floors = b["strategies"]["course_ft"]["floor"]
        assert [f["phase"] for f in floors] == [1, 2]
        assert all(f["epoch_floor_s"] > 0 for f in floors)
        assert all(f["ratio"] == pytest.approx(f["epoch_s"] / f["epoch_floor_s"]) for f in floors)
        assert {"ft_peak_rss_gb", "fit_epoch_over_floor"} <= set(b["targets"])
        assert "ft_speedup_vs_fastai_fine_tune" not in b["targets"]
    assert [f["stages"] for f in r["backbones"]["lite0"]["strategies"]["course_ft"]["floor"]] == [
        ["classifier"],
        ["blocks.6", "conv_head", "classifier"],
    ]
    rows = r["backbones"]["resnet18"]["levers"]["rows"]  # the levers time ResNet18's layer4 step
    assert rows[0]["agree"] == 1.0 and rows[0]["max_logit_diff"] == 0.0  # the plain step against itself
    assert all(x["step_s"] > 0 and 0.0 <= x["agree"] <= 1.0 for x in rows)
    assert "levers" not in r["backbones"]["lite0"]
    md = (tmp_path / "peers.md").read_text()
    assert "| course tl.fine_tune" in md and "| phase 2 (layer4 + head) |" in md and "fastai not installed" in md
    assert "| phase 2 (blocks.6 + conv_head + head) |" in md and "EfficientNet-Lite0" in md


def test_peers_without_fastai_says_how_to_install(tmp_path, monkeypatch, capsys, cifar_root):
    spec = importlib.util.spec_from_file_location("peers", PEERS)
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    monkeypatch.setattr(peers, "have_fastai", lambda: False)
    argv = ["--tiny", "--backbone", "resnet18", "--only", "course_fe", "fastai_frozen", "--no-levers"]
    r = peers.main([*argv, "--out", str(tmp_path)])
    assert 'pip install -e ".[bench]"' in capsys.readouterr().out
    assert list(r["backbones"]) == ["resnet18"] and list(r["backbones"]["resnet18"]["strategies"]) == ["course_fe"]


def test_peers_fastai_side_tiny(tmp_path, cifar_root):
    """fastai's two recipes on both backbones (Lite0 through fastai's timm body and head)."""
    pytest.importorskip("fastai")
    pytest.importorskip("timm")
    r = _peers(tmp_path, "--no-levers", "--only", "fastai_frozen", "fastai_ft")
    assert r["fastai"] and list(r["backbones"]) == ["resnet18", "lite0"]
    for b in r["backbones"].values():
        assert list(b["strategies"]) == ["fastai_frozen", "fastai_ft"]
        for row in b["strategies"].values():
            _sane(row)
