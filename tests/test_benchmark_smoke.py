"""Smoke test of the performance benchmark (benchmarks/perf_workflow.py): the course side at a tiny size.

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


def test_fold_bn_fast_path_gives_the_same_features(cat_dog):
    import torch

    import tlhelpers as tl
    from tlhelpers.embed import fold_batchnorm

    train, _ = cat_dog
    model, preprocess = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.freeze(model)
    model.train()
    images = train.images[:6]
    ref, _ = tl.embed(model, images, preprocess, amp=False)
    fast, _ = tl.embed(model, images, preprocess, amp=False, fold_bn=True)
    assert fast.shape == ref.shape == (6, 512)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    assert model.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # model untouched
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert model.training  # folding traced the eval branch and put the mode back


def test_fold_batchnorm_shares_what_it_does_not_fold_and_leaves_the_model_alone():
    import copy

    import torch
    import torch.nn as nn
    import torchvision

    from tlhelpers.embed import fold_batchnorm

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(2):
            model(torch.randn(8, 3, 64, 64))
    before = copy.deepcopy(model.state_dict())
    folded = fold_batchnorm(model, torch.bfloat16)
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and all(c.weight.dtype == torch.bfloat16 and c.bias is not None for c in convs)
    assert folded.fc is model.fc  # shared, not copied
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20  # the model keeps its own layers
    model.eval()
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        out = fold_batchnorm(model)(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = folded(x).float()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert (low - ref).abs().max() < 0.05 * ref.abs().max()  # bf16 rounding, not a different function

    class PreActivation(nn.Module):  # BatchNorm before the conv, and a conv whose output is also used raw
        def __init__(self):
            super().__init__()
            self.bn0, self.conv, self.bn1 = nn.BatchNorm2d(3), nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(self.bn0(x))
            return self.bn1(y) + y

    pre = PreActivation().eval()
    kept = fold_batchnorm(pre)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in kept.modules()) == 2  # nothing foldable: both stay
    torch.testing.assert_close(kept(x), pre(x))

    class DataDependent(PreActivation):  # torch.fx cannot trace this: the model itself is returned
        def forward(self, x):
            return self.bn1(self.conv(x)) if x.sum() > 0 else x

    odd = DataDependent().eval()
    assert fold_batchnorm(odd) is odd


def test_batch_preprocess_matches_the_torchvision_preset(cat_dog):
    import torch
    from torchvision.transforms._presets import ImageClassification

    from tlhelpers.embed import BatchPreprocess, fast_preprocess

    images = cat_dog[1].images[:16]
    for preset in (
        ImageClassification(crop_size=224, resize_size=224),  # CIFAR upscaled, the benchmark's case
        ImageClassification(crop_size=24, resize_size=28, mean=[0.5] * 3, std=[0.25] * 3),
    ):  # downscaled
        fast = fast_preprocess(preset)
        assert isinstance(fast, BatchPreprocess)
        ref, out = preset(images), fast(images)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert (out - ref).abs().max().item() < 0.02  # only the preset's uint8 rounding of the resized image differs
    odd = torch.randint(0, 256, (2, 3, 40, 30), dtype=torch.uint8)  # non-square: shorter side, then centre crop
    preset = ImageClassification(crop_size=24, resize_size=28)
    assert (fast_preprocess(preset)(odd) - preset(odd)).abs().max().item() < 0.02
    assert fast_preprocess(abs) is abs  # anything else is returned unchanged


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
