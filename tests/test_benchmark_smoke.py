"""Smoke tests of the benchmarks (perf_workflow, perf_runs, load_photos): tiny sizes, sane results.

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
