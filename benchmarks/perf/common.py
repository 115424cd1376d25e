"""Shared by every phase: constants, the results schema, machine facts, running a measured child process.

No torch at import: the orchestrating process never imports it (see ``run``)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "perf_workflow.py"  # the entry point: workers are run through it too
DESCRIPTION = (
    "Performance benchmark: the source text's cat-vs-dog workflow (the anchor) against the course's, in one run."
)
WORKER_KINDS = ("prepare", "course", "ablate", "anchor-scaling")
ANCHOR_DIR = Path(os.environ.get("TLHELPERS_ANCHORS", ROOT.parent / "shared" / "anchors"))
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CAT_DOG = (3, 5)  # CIFAR-10 label ids, as the anchor's ``selected_classes``
STANDIN_NAME = "resnet18-f37072fd.pth"  # the file torchvision's ResNet18_Weights.IMAGENET1K_V1 loads
PHASES = ("filter", "setup", "train_1_epoch", "eval", "total")  # the anchor's timed phases, and the course's

SCHEMA = """perf.json (all times in seconds, memory in MB = 1e6 bytes):
  machine: cpu, threads, torch, avx512_bf16, amx, bf16_autocast (used on this CPU)
  weights: name, sha256, provisional (true = random development weights, numbers meaningless)
  config: n_train, n_test, image_size, batch_size, lr, epochs, selection, embed_batch
  anchor | course: phases {filter, setup, train_1_epoch, eval, total}, peak_rss_mb, test_accuracy,
      process_wall (incl. interpreter start and imports); course also: train_10_epochs, head_10_epochs,
      test_accuracy_10_epochs, accuracy_by_seed {epochs_1, epochs_10}, embed_train, filter_select, filter_decode
  course_native: the course workflow at the backbone's own preprocessing (not the anchor's 224 px)
  speedup: {filter, train_1_epoch, eval, total} = anchor seconds / course seconds
  targets: {name: {value, target, met}}: total_speedup, ten_epochs_over_one, course_peak_rss_gb, accuracy
  accuracy_noise: se_difference (binomial standard error of the accuracy difference), within_noise
  floor: ms_per_image (best forward), seconds (x 1,200 images), fp32_seconds, course_total_over_floor
  techniques: filter_breakdown, transforms, forward (ladder, ms/image), caching, precision {fp32, bf16, int8},
      same_images, course_settings (embed batch / BN folding / preprocessing sweep), import_baseline
  scaling: sizes, anchor [{n_train, filter, setup, train_1_epoch, eval, total}], course [... + peak_rss_mb], method
"""


# ---------------------------------------------------------------- shared helpers


def bench_cache() -> Path:
    """Where rebuilt batches and the stand-in weights are cached: ``<tlhelpers cache>/bench``."""
    from tlhelpers.settings import cache_dir

    return cache_dir() / "bench"


def anchor_selection(jpeg_root: Path, split: str, n: int) -> tuple[list[str], torch.Tensor]:
    """The files the anchor uses (its first ``n`` cat/dog images in batch order) and labels 0/1, from labels alone.

    ``make_cifar_batches.py`` lists each class folder sorted, concatenates them in label order and
    permutes with ``default_rng(0)``; so position ``i`` of the rebuilt batches holds file ``perm[i]``.
    """
    import torch

    from tlhelpers.data import CIFAR10_CLASSES, remap_labels, scan_image_folder

    names, files, targets = scan_image_folder(Path(jpeg_root) / split)
    expected = 50000 if split == "train" else 10000
    if names != list(CIFAR10_CLASSES) or len(files) != expected:
        raise ValueError(f"{jpeg_root}/{split} is not the full CIFAR-10 tree ({len(files)} files, classes {names}).")
    perm = np.random.default_rng(0).permutation(len(targets))
    pos = perm[np.isin(targets[perm], CAT_DOG)][:n]
    return [files[i] for i in pos], remap_labels(torch.from_numpy(targets[pos]), CAT_DOG)


def anchor_preprocess():
    """The anchor's Resize(224) + ToTensor + Normalize(ImageNet), as one batched tensor transform."""
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=224, resize_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def has_cpu_flag(flag: str) -> bool:
    """True if ``/proc/cpuinfo`` lists ``flag``."""
    try:
        return f" {flag}" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def cpu_name() -> str:
    """The CPU's model name."""
    try:
        m = re.search(r"model name\s*:\s*(.+)", open("/proc/cpuinfo").read())
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def run_child(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> tuple[str, dict]:
    """Run one process; return its stdout and its own stats: wall seconds, peak RSS in MB (``wait4``'s
    ``ru_maxrss``, this process only), CPU seconds (user + system) and the 1-minute load average before/after."""
    load_before, t = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # stderr to a file: no pipe can fill up and block the child
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        out = p.stdout.read()  # then reap it with wait4, which (unlike communicate) returns its own rusage
        p.stdout.close()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{err.read()[-2000:]}")
    return out, {
        "process_wall": wall,
        "peak_rss_mb": usage.ru_maxrss * 1024 / 1e6,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load_avg_1min": [load_before, os.getloadavg()[0]],
    }


def last_json(stdout: str) -> dict:
    """The JSON object a worker prints as its last line of output."""
    return json.loads(stdout.strip().splitlines()[-1])
