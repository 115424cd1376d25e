"""Performance benchmark: the source text's cat-vs-dog workflow (the anchor) against the course's, in one run.

    flock /tmp/tl-cpu.lock python benchmarks/perf_workflow.py        # full run, about 15 minutes on 2 cores
    python benchmarks/perf_workflow.py --no-scaling --no-ablation    # just the side-by-side table (~2 min)
    python benchmarks/perf_workflow.py --course-only --n-train 40 --n-test 20 --sizes 16 32 --out /tmp/b  # smoke

What it runs, each workflow in its own subprocess (so per-process peak RSS is its own ``ru_maxrss``):

* **anchor**: ``../shared/anchors/seed_cifar_workflow.py``, unchanged, in a temp dir whose ``./data`` links
  to CIFAR-10 batches rebuilt once by the anchor folder's ``make_cifar_batches.py`` (cached under
  ``~/.cache/tlhelpers/bench``; building them is not timed), with ``$TORCH_HOME`` holding a stand-in
  ``resnet18-f37072fd.pth``: the course backbone in fp32 with its 8-class ``fc`` zero-padded to 1000
  classes (the anchor replaces ``fc`` anyway), so both sides start from the same weights.
* **course**: the same 1,000 / 200 images (the anchor's *first* cat/dog indices in batch order, found from
  the labels alone), the same weights, 224 px with ImageNet mean/std, batch 32, Adam 1e-3, one epoch,
  through ``tlhelpers``: decode only the selected JPEGs, batched tensor preprocessing, ``tl.embed`` (frozen
  backbone run once: inference_mode, channels_last, BatchNorm folded into the convolutions, bf16 autocast
  where the CPU has native bf16, glibc keeping freed memory: ``tl.device.reuse_freed_memory()``) and
  ``tl.fit_head`` on the cached features.
* **ablation**: what each technique buys (forward-pass ladder, transforms, caching, bf16 vs fp32 accuracy).
* **scaling**: time vs number of training images for both approaches (plot).

Results: ``benchmarks/results/perf.json`` (schema in ``SCHEMA`` below), ``perf.md``, ``perf_scaling.png``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tlhelpers.data import ImageTensors

# The orchestrating process never imports torch. On Linux a child's ru_maxrss starts from its parent's peak RSS
# (subprocess uses vfork, and exec keeps the high-water mark of the memory it replaces), so a parent that had
# imported torch (~0.7 GB here) would set a floor under every measured child. Workers and importers get torch.
if __name__ != "__main__" or "--worker" in sys.argv:
    import torch

ROOT = Path(__file__).resolve().parents[1]
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
    from tlhelpers.data import cache_dir

    return cache_dir() / "bench"


def anchor_selection(jpeg_root: Path, split: str, n: int) -> tuple[list[str], torch.Tensor]:
    """The files the anchor uses (its first ``n`` cat/dog images in batch order) and labels 0/1, from labels alone.

    ``make_cifar_batches.py`` lists each class folder sorted, concatenates them in label order and
    permutes with ``default_rng(0)``; so position ``i`` of the rebuilt batches holds file ``perm[i]``.
    """
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


# ---------------------------------------------------------------- preparation (not timed)


def prepare_batches(jpeg_root: Path, cache: Path) -> Path:
    """CIFAR-10 batches rebuilt from the JPEG tree by the anchor's own script, cached outside the repo."""
    out = cache / "data" / "cifar-10-batches-py"
    if not (out / "test_batch").is_file():
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"Rebuilding CIFAR-10 batches into {out} (once, not timed)...", flush=True)
        run_child([sys.executable, str(ANCHOR_DIR / "make_cifar_batches.py"), str(jpeg_root), str(tmp)])
        tmp.rename(out)
    return out


def prepare_standin() -> Path:
    """``$TORCH_HOME`` holding the course backbone as a 1000-class resnet18 state dict (fp32, fc zero-padded)."""
    from tlhelpers.models import course_backbone_info, course_state_dict

    info = course_backbone_info()
    home = bench_cache() / "torch" / info["sha256"][:12]
    path = home / "hub" / "checkpoints" / STANDIN_NAME
    if not path.is_file():
        sd = course_state_dict()  # verifies the sha256, converts to fp32
        w, b = sd["fc.weight"], sd["fc.bias"]
        sd["fc.weight"] = torch.cat([w, w.new_zeros(1000 - len(w), w.shape[1])])
        sd["fc.bias"] = torch.cat([b, b.new_zeros(1000 - len(b))])
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd, path.with_suffix(".partial"))
        path.with_suffix(".partial").rename(path)
    return home


def check_same_images(batches: Path, jpeg_root: Path, n_train: int, n_test: int) -> dict:
    """Do our labels-only selections pick the anchor's images? Compare labels and pixels with the pickled batches."""
    import pickle

    from tlhelpers.data import decode_files

    out = {}
    for split, n, names in (
        ("train", n_train, [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", n_test, ["test_batch"]),
    ):
        data, labels = [], []
        for name in names:
            with open(batches / name, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            data.append(d["data"])
            labels += d["labels"]
        labels = np.asarray(labels)
        idx = np.flatnonzero(np.isin(labels, CAT_DOG))[:n]
        ref = torch.from_numpy(np.concatenate(data)[idx].reshape(-1, 3, 32, 32))
        files, lab = anchor_selection(jpeg_root, split, n)
        ours = decode_files(files)
        diff = (ours.int() - ref.int()).abs()
        out[split] = {
            "labels_equal": bool((lab.numpy() == (labels[idx] == CAT_DOG[1])).all()),
            "max_abs_pixel_diff": int(diff.max()),
            "mean_abs_pixel_diff": round(float(diff.float().mean()), 4),
        }
    return out


# ---------------------------------------------------------------- helpers of the workers


def anchor_images(args: argparse.Namespace) -> tuple[ImageTensors, ImageTensors, float]:
    """The anchor's train and test images, decoded, and the seconds it took to select them from labels alone."""
    from tlhelpers.data import ImageTensors, decode_files

    start = time.perf_counter()
    train_files, train_labels = anchor_selection(args.jpeg_root, "train", args.n_train)
    test_files, test_labels = anchor_selection(args.jpeg_root, "test", args.n_test)
    select_seconds = time.perf_counter() - start
    train = ImageTensors(decode_files(train_files), train_labels, ["cat", "dog"])
    test = ImageTensors(decode_files(test_files), test_labels, ["cat", "dog"])
    return train, test, select_seconds


def frozen_backbone() -> tuple[torch.nn.Module, object]:
    """The course backbone with a 2-class ``fc``, frozen but for ``fc``, and its own preprocessing."""
    import tlhelpers as tl

    model, native = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.freeze(model)
    tl.unfreeze(model, "fc")
    return model, native


def head_accuracy(head: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``features`` that ``head`` classifies as ``labels``."""
    with torch.inference_mode():
        return (head(features).argmax(1) == labels).float().mean().item()


def seeded_head_accuracy(train_xy: tuple, test_xy: tuple, epochs: int, seed: int, lr: float = 1e-3) -> float:
    """Test accuracy of a head trained on cached (features, labels) for ``epochs`` epochs from ``seed``."""
    import tlhelpers as tl

    head, _ = tl.fit_head(*train_xy, 2, epochs=epochs, lr=lr, batch_size=32, seed=seed, progress=False)
    return head_accuracy(head, *test_xy)


def accuracy_by_seed(train_xy: tuple, test_xy: tuple, n_seeds: int, lr: float = 1e-3) -> dict[int, list[float]]:
    """Test accuracies of heads trained from seeds ``0 .. n_seeds - 1``, after 1 and after 10 epochs."""
    return {
        epochs: [seeded_head_accuracy(train_xy, test_xy, epochs, seed, lr) for seed in range(n_seeds)]
        for epochs in (1, 10)
    }


def anchor_labels(labels: torch.Tensor) -> torch.Tensor:
    """CIFAR-10 labels as the anchor maps them: cat 0, dog 1."""
    return torch.tensor([CAT_DOG.index(label.item()) for label in labels])


def _anchor_objects(data_root: str):
    """The anchor's datasets and transform, built exactly as it builds them (integrity check bypassed)."""
    import torchvision
    import torchvision.datasets.cifar as _cifar
    from torchvision import datasets, transforms

    torchvision.datasets.CIFAR10._check_integrity = lambda self: True
    _cifar.check_integrity = lambda *a, **k: True
    transform = transforms.Compose(
        [transforms.Resize(224), transforms.ToTensor(), transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)]
    )
    train = datasets.CIFAR10(root=data_root, train=True, download=True, transform=transform)
    test = datasets.CIFAR10(root=data_root, train=False, download=True, transform=transform)
    return train, test, transform


# ---------------------------------------------------------------- workers (run as subprocesses)


def worker_prepare(args: argparse.Namespace) -> dict:
    """Everything the orchestrator needs from torch/tlhelpers: machine and weights info, paths, the stand-in weights."""
    import tlhelpers as tl
    from tlhelpers.data import cifar_dir
    from tlhelpers.models import course_backbone_info

    info = course_backbone_info()
    return {
        "machine": {
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "tlhelpers": str(Path(tl.__file__).parent),
            "bf16_autocast": bool(tl.device.fast_cpu_autocast()),
        },
        "weights": {"name": info["name"], "sha256": info["sha256"], "provisional": info["name"] == "PROVISIONAL"},
        "bench_cache": str(bench_cache()),
        "jpeg_root": str(args.jpeg_root or cifar_dir()),
        "torch_home": None if args.course_only else str(prepare_standin()),
    }


def worker_course(args: argparse.Namespace) -> dict:
    """The course's workflow through tlhelpers, timed phase by phase like the anchor (imports are not timed)."""
    import tlhelpers as tl

    # opt-in in tlhelpers; part of the course's workflow here (off: TLHELPERS_MALLOC_TUNE=0)
    tl.device.reuse_freed_memory()
    start = time.perf_counter()
    train, test, seconds = course_images(args, start)
    t = time.perf_counter()
    model, preprocess = course_model(args)
    seconds["setup"] = time.perf_counter() - t
    options = {"batch_size": args.embed_batch, "amp": not args.fp32, "fold_bn": bool(args.fold_bn)}
    train_xy, test_xy, accuracy = course_train_and_test(args, model, preprocess, options, (train, test), seconds)
    seconds["total"] = time.perf_counter() - start

    # Beyond the timed one-epoch workflow: 10 head epochs on the same cached features, and the seed spread.
    t = time.perf_counter()
    tl.fit_head(*train_xy, 2, epochs=10, lr=args.lr, batch_size=32, seed=0, progress=False)
    seconds["head_10_epochs"] = time.perf_counter() - t
    seconds["train_10_epochs"] = seconds["embed_train"] + seconds["head_10_epochs"]
    more = ("filter_select", "filter_decode", "embed_train", "head_10_epochs", "train_10_epochs")
    ten_epochs = seeded_head_accuracy(train_xy, test_xy, 10, 0, args.lr)
    spread = accuracy_by_seed(train_xy, test_xy, args.seeds, args.lr)
    return {
        "phases": {k: seconds[k] for k in PHASES},
        **{k: seconds[k] for k in more},
        "test_accuracy": accuracy,
        "test_accuracy_10_epochs": ten_epochs,
        "accuracy_by_seed": {"epochs_1": spread[1], "epochs_10": spread[10]},
        "n_train": len(train),
        "n_test": len(test),
        "threads": torch.get_num_threads(),
        "embed_options": options,
        "reuse_freed_memory": tl.device.reuse_freed_memory(),
        "preprocess": repr(preprocess).replace("\n", " "),
        "image_size": int(preprocess(train.images[:1]).shape[-1]),
    }


def course_images(args: argparse.Namespace, start: float) -> tuple[ImageTensors, ImageTensors, dict[str, float]]:
    """The course workflow's filter phase: its train and test images, and the seconds it took since ``start``."""
    import tlhelpers as tl

    if args.selection == "anchor":  # the anchor's exact images, found from labels alone
        train, test, select_seconds = anchor_images(args)
    else:  # the course's own balanced, seeded subset
        train, test = tl.load_cifar_pair(
            ("cat", "dog"), args.n_train, args.n_test, seed=0, source="folder", root=args.jpeg_root
        )
        select_seconds = float("nan")
    filter_seconds = time.perf_counter() - start
    seconds = {"filter_select": select_seconds, "filter": filter_seconds}
    seconds["filter_decode"] = filter_seconds - select_seconds
    return train, test, seconds


def course_model(args: argparse.Namespace) -> tuple[torch.nn.Module, object]:
    """The course workflow's setup phase: the frozen backbone and the preprocessing it is run with."""
    from tlhelpers.embed import fast_preprocess

    model, native = frozen_backbone()
    preprocess = native if args.native else anchor_preprocess()  # the anchor's Resize(224) + Normalize(ImageNet)
    if args.fast_preprocess:
        preprocess = fast_preprocess(preprocess)  # same maths, normalize at 32 px, then resize once in float
    return model, preprocess


def course_train_and_test(args, model, preprocess, options: dict, images: tuple, seconds: dict) -> tuple:
    """The course workflow's timed training epoch (embed once, fit the head) and eval: features and accuracy."""
    import tlhelpers as tl

    train, test = images
    t = time.perf_counter()
    train_xy = tl.embed(model, train, preprocess, **options)
    seconds["embed_train"] = time.perf_counter() - t
    head, _ = tl.fit_head(*train_xy, 2, epochs=1, lr=args.lr, batch_size=32, seed=0, progress=False)
    model.fc = head
    seconds["train_1_epoch"] = time.perf_counter() - t

    t = time.perf_counter()
    test_xy = tl.embed(model, test, preprocess, **options)
    accuracy = head_accuracy(head, *test_xy)
    seconds["eval"] = time.perf_counter() - t
    return train_xy, test_xy, accuracy


def worker_anchor_scaling(args: argparse.Namespace) -> dict:
    """A parameterised copy of the anchor's logic: its filter loop once (it enumerates all 60,000 images
    whatever ``n``), then for each training-set size its model setup, one training epoch and its eval."""
    start = time.perf_counter()
    train_full, test_full, _ = _anchor_objects(args.data_root)
    train_idx = [i for i, (_, label) in enumerate(train_full) if label in CAT_DOG]
    test_idx = [i for i, (_, label) in enumerate(test_full) if label in CAT_DOG][: args.n_test]
    filter_seconds = time.perf_counter() - start
    rows = []
    for n in args.sizes:
        rows.append(anchor_scaling_row((train_full, train_idx[:n]), (test_full, test_idx), filter_seconds))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"rows": rows}


def anchor_scaling_row(train: tuple, test: tuple, filter_seconds: float) -> dict:
    """The anchor's setup, one training epoch and eval on (dataset, indices) pairs, timed: one row of scaling."""
    from torch.utils.data import DataLoader, Subset

    start = time.perf_counter()
    torch.manual_seed(0)
    train_loader = DataLoader(Subset(*train), batch_size=32, shuffle=True)
    test_loader = DataLoader(Subset(*test), batch_size=32, shuffle=False)
    model, criterion, optimizer = anchor_model()
    setup = time.perf_counter() - start
    t = time.perf_counter()
    anchor_train_epoch(model, train_loader, criterion, optimizer)
    train_seconds = time.perf_counter() - t
    t = time.perf_counter()
    accuracy = anchor_accuracy(model, test_loader)
    eval_seconds = time.perf_counter() - t
    return {
        "n_train": len(train[1]),
        "filter": filter_seconds,
        "setup": setup,
        "train_1_epoch": train_seconds,
        "eval": eval_seconds,
        "total": filter_seconds + setup + train_seconds + eval_seconds,
        "test_accuracy": accuracy,
    }


def anchor_model() -> tuple:
    """The anchor's model, loss and optimizer: ImageNet resnet18, frozen, a new 2-class ``fc`` under Adam 1e-3."""
    from torchvision import models

    model = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
    for p in model.parameters():
        p.requires_grad = False
    model.fc = torch.nn.Linear(model.fc.in_features, 2)
    return model, torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.fc.parameters(), lr=1e-3)


def anchor_train_epoch(model: torch.nn.Module, loader, criterion, optimizer) -> None:
    """One training epoch, as the anchor runs it."""
    model.train()
    for images, labels in loader:
        labels = anchor_labels(labels)
        optimizer.zero_grad()
        criterion(model(images), labels).backward()
        optimizer.step()


def anchor_accuracy(model: torch.nn.Module, loader) -> float:
    """Test accuracy, as the anchor measures it."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            labels = anchor_labels(labels)
            correct += (model(images).argmax(1) == labels).sum().item()
            total += labels.size(0)
    return correct / total


def worker_ablate(args: argparse.Namespace) -> dict:
    """What each technique buys, measured on the anchor's images with the same weights."""
    train, test, breakdown, anchor_train = ablate_filtering(args)
    transforms, same_images, preprocess = ablate_transforms(args, train, anchor_train)
    out: dict[str, dict] = {} if same_images is None else {"same_images": same_images}
    out["filter_breakdown"] = breakdown
    out["transforms"] = transforms
    model, _ = frozen_backbone()
    out["forward"] = ablate_forward(args, model, train, preprocess)
    out["caching"] = ablate_caching(model, train, preprocess)
    out["precision"] = ablate_precision(args, model, (train, test), preprocess, out["forward"]["bf16_native"])
    return out


def ablate_filtering(args: argparse.Namespace) -> tuple:
    """1. Filtering: the anchor's loop decodes and transforms every image to read its label."""
    start = time.perf_counter()
    train, test, select_seconds = anchor_images(args)
    breakdown = {
        "labels_only_select": select_seconds,
        "decode_selected": time.perf_counter() - start - select_seconds,
        "n_selected": len(train) + len(test),
    }
    if not args.data_root:
        return train, test, breakdown, None
    t = time.perf_counter()
    anchor_train, _, transform = _anchor_objects(args.data_root)
    breakdown["load_pickled_batches"] = time.perf_counter() - t
    breakdown.update(anchor_loop_cost(anchor_train, transform, args.probe_images))
    return train, test, breakdown, anchor_train


def anchor_loop_cost(dataset, transform, n_images: int) -> dict:
    """What reading labels costs: ``dataset.targets`` for all, or ``dataset[i]`` (as the anchor's loop) per image."""
    t = time.perf_counter()
    np.flatnonzero(np.isin(np.asarray(dataset.targets), CAT_DOG))
    cost = {"targets_lookup": time.perf_counter() - t}
    dataset.transform = None
    cost["ms_per_image_to_pil"] = ms_per_item(dataset, n_images)
    dataset.transform = transform
    cost["ms_per_image_to_pil_resize_normalize"] = ms_per_item(dataset, n_images)
    cost["estimated_loop_60000"] = cost["ms_per_image_to_pil_resize_normalize"] * 60000 / 1000
    cost["probe_images"] = n_images
    return cost


def ms_per_item(dataset, n_items: int) -> float:
    """Milliseconds per ``dataset[i]`` over the first ``n_items`` items."""
    t = time.perf_counter()
    for i in range(n_items):
        dataset[i]
    return (time.perf_counter() - t) * 1000 / n_items


def batched_seconds(transform, images: ImageTensors) -> float:
    """Seconds to run ``transform`` over ``images`` in batches of 32."""
    t = time.perf_counter()
    for i in range(0, len(images), 32):
        transform(images.images[i : i + 32])
    return time.perf_counter() - t


def ablate_transforms(args: argparse.Namespace, train: ImageTensors, anchor_train) -> tuple:
    """2. Transforms: per-image PIL path through Dataset + DataLoader vs one batched tensor transform."""
    from torch.utils.data import DataLoader, Subset

    from tlhelpers.embed import fast_preprocess

    preset = anchor_preprocess()
    per_image = float("nan")
    if anchor_train is not None:
        idx = [i for i, y in enumerate(anchor_train.targets) if y in CAT_DOG][: args.n_train]
        t = time.perf_counter()
        for _ in DataLoader(Subset(anchor_train, idx), batch_size=32):
            pass
        per_image = time.perf_counter() - t
    fast = fast_preprocess(preset)
    batched_seconds(fast, train)  # warm-up
    same_images = None
    if args.data_root:
        batches = Path(args.data_root) / "cifar-10-batches-py"
        same_images = check_same_images(batches, args.jpeg_root, args.n_train, args.n_test)
    transforms = {
        "n_images": len(train),
        "per_image_pil_dataloader": per_image,
        "batched_torchvision_preset": batched_seconds(preset, train),
        "batched_tlhelpers": batched_seconds(fast, train),
        "max_abs_difference": (preset(train.images[:64]) - fast(train.images[:64])).abs().max().item(),
    }
    return transforms, same_images, (fast if args.fast_preprocess else preset)


def ladder_ms(configs: list[tuple[str, object, list[torch.Tensor]]], reps: int) -> list[dict]:
    """ms per image for each (label, fn, batches): one warm-up, then ``reps`` interleaved rounds, best round kept
    (the minimum is the least disturbed by other work on a shared machine; all rounds are recorded)."""
    times: dict[str, list[float]] = {c[0]: [] for c in configs}
    for _, fn, batches in configs:
        fn(batches[0])
    for _ in range(reps):
        for label, fn, batches in configs:
            t = time.perf_counter()
            for b in batches:
                fn(b)
            times[label].append((time.perf_counter() - t) * 1000 / sum(len(b) for b in batches))
    return [{"config": k, "ms_per_image": min(v), "rounds": v} for k, v in times.items()]


def int8_model(model: torch.nn.Module, calib: torch.Tensor) -> tuple[torch.nn.Module, float] | None:
    """An int8 copy of ``model``'s body (everything before ``fc``, output N x 512 float) by FX static quantization
    calibrated on the preprocessed batch ``calib``, and the seconds it took; None if this PyTorch lacks the
    deprecated ``torch.ao.quantization`` API. Measured for comparison only: the course does not use it."""
    import warnings

    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            torch.backends.quantized.engine = "x86"
            layers = list(copy.deepcopy(model).eval().children())[:-1]
            body = torch.nn.Sequential(*layers, torch.nn.Flatten(1))
            q = prepare_fx(body, get_default_qconfig_mapping("x86"), example_inputs=(calib[:1],))
            with torch.inference_mode():
                q(calib)
            q = convert_fx(q)
    except Exception:
        return None
    return q, time.perf_counter() - t


def split_batches(x: torch.Tensor, n: int, size: int, channels_last: bool = False) -> list[torch.Tensor]:
    """The first ``n`` rows of ``x`` in contiguous batches of ``size``, channels_last or not."""
    if channels_last:
        return [x[i : i + size].contiguous(memory_format=torch.channels_last) for i in range(0, n, size)]
    return [x[i : i + size].contiguous() for i in range(0, n, size)]


def anchor_step(net: torch.nn.Module, labels: torch.Tensor):
    """What the anchor does per batch while training (BatchNorm in train mode), as a function of the batch."""
    criterion, opt = torch.nn.CrossEntropyLoss(), torch.optim.Adam(net.fc.parameters(), lr=1e-3)

    def fn(b: torch.Tensor) -> None:
        net.train()
        opt.zero_grad()
        criterion(net(b), labels[: len(b)]).backward()
        opt.step()

    return fn


def forward_pass(net: torch.nn.Module, ctx, bf16: bool):
    """An inference forward in eval mode under ``ctx``, with or without bf16 autocast."""

    def fn(b: torch.Tensor) -> None:
        net.eval()
        with ctx(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(b)

    return fn


def ladder_nets(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The variants of ``model`` the forward ladder compares (``model`` itself is left as it is)."""
    from tlhelpers.embed import fold_batchnorm

    plain = copy.deepcopy(model)  # no tlhelpers BatchNorm guard: the anchor's BatchNorm really runs in train mode
    for mod in plain.modules():
        mod._forward_pre_hooks.clear()
    return {
        "plain": plain,
        "channels_last": copy.deepcopy(model).to(memory_format=torch.channels_last),
        "folded": fold_batchnorm(model),
        "folded16": fold_batchnorm(model, torch.bfloat16),  # what tl.embed runs under bf16 autocast
    }


def fp32_ladder(model: torch.nn.Module, nets: dict, batches, labels: torch.Tensor) -> list[tuple]:
    """The fp32 rungs of the forward ladder: from the anchor's training step to BatchNorm folded."""
    im = torch.inference_mode
    return [
        ("anchor: train-mode BN, autograd, fp32, batch 32", anchor_step(nets["plain"], labels), batches(32)),
        ("eval + no_grad, fp32, batch 32", forward_pass(model, torch.no_grad, False), batches(32)),
        ("eval + inference_mode, fp32, batch 32", forward_pass(model, im, False), batches(32)),
        ("+ channels_last input", forward_pass(model, im, False), batches(32, True)),
        ("+ channels_last weights too", forward_pass(nets["channels_last"], im, False), batches(32, True)),
        ("+ BatchNorm folded into conv, fp32", forward_pass(nets["folded"], im, False), batches(32, True)),
    ]


def bf16_ladder(model: torch.nn.Module, nets: dict, batches, embed_batch: int) -> list[tuple]:
    """The bf16 rungs of the forward ladder, up to what tl.embed runs (for CPUs with native bf16)."""
    im, folded = torch.inference_mode, nets["folded"]
    configs = [
        ("bf16 autocast alone (contiguous, BN not folded), batch 32", forward_pass(model, im, True), batches(32)),
        ("channels_last + bf16 autocast, batch 32", forward_pass(model, im, True), batches(32, True)),
        ("channels_last + bf16 autocast, batch 16", forward_pass(model, im, True), batches(16, True)),
        ("channels_last + bf16 autocast + BN folded, batch 32", forward_pass(folded, im, True), batches(32, True)),
    ]
    configs += [
        (f"channels_last + bf16 autocast + BN folded, batch {bs}", forward_pass(folded, im, True), batches(bs, True))
        for bs in sorted({16, 64, embed_batch} - {32})
    ]
    label = f"channels_last + bf16 autocast + BN folded into bf16 weights (tl.embed), batch {embed_batch}"
    configs.append((label, forward_pass(nets["folded16"], im, True), batches(embed_batch, True)))
    return configs


def ablate_forward(args: argparse.Namespace, model: torch.nn.Module, train: ImageTensors, preprocess) -> dict:
    """3. The forward pass: a ladder of techniques, ms per image on preprocessed 224 px batches."""
    import tlhelpers as tl

    n, embed_batch = args.forward_images, args.embed_batch
    x = torch.cat([preprocess(train.images[i : i + 64]) for i in range(0, n, 64)])[:n]

    def batches(size: int, channels_last: bool = False) -> list[torch.Tensor]:
        return split_batches(x, n, size, channels_last)

    nets = ladder_nets(model)
    bf16_ok = tl.device.fast_cpu_autocast()
    configs = fp32_ladder(model, nets, batches, train.labels[:n])
    if bf16_ok:
        configs += bf16_ladder(model, nets, batches, embed_batch)
    int8 = int8_model(model, x[:32])
    if (
        int8 is not None
    ):  # measured for comparison only: torch.ao.quantization is deprecated, the course does not use it
        label = "int8 static quantization (torch.ao, deprecated; not used), batch 32"
        configs.append((label, forward_pass(int8[0], torch.inference_mode, False), batches(32, True)))
    ladder = ladder_ms(configs, args.reps)
    # Last, because it cannot be undone in this process: glibc keeps freed activation buffers for the next batch
    # (tl.device.reuse_freed_memory, which the course workflow above calls; every row above ran with glibc's default).
    if tl.device.reuse_freed_memory():
        if bf16_ok:
            best, label = nets["folded16"], "channels_last + bf16 autocast + BN folded into bf16 weights"
        else:
            best, label = nets["folded"], "channels_last + BN folded, fp32"
        label = f"{label}, batch {embed_batch}, + freed memory kept for reuse"
        kept = (label, forward_pass(best, torch.inference_mode, bf16_ok), batches(embed_batch, True))
        ladder += ladder_ms([kept], args.reps)
    return {
        "n_images": n,
        "bf16_native": bf16_ok,
        "reps": args.reps,
        "ladder": ladder,
        "int8_quantize_seconds": int8[1] if int8 else None,
    }


def ablate_caching(model: torch.nn.Module, train: ImageTensors, preprocess) -> dict:
    """4. Feature caching: one uncached epoch of head training (backbone in the loop, fast path otherwise)."""
    import tlhelpers as tl

    loader = tl.make_loader(train, batch_size=32, shuffle=True, seed=0)
    t = time.perf_counter()
    tl.fit(model, loader, epochs=1, lr=1e-3, transform=preprocess, progress=False)
    return {
        "uncached_epoch": time.perf_counter() - t,
        "note": "backbone forward every epoch (tl.fit, frozen backbone, same fast path); 10 epochs = 10x",
    }


def int8_features(quantized: torch.nn.Module, images: ImageTensors, preprocess, batch_size: int) -> torch.Tensor:
    """Features of ``images`` from the int8 body, in channels_last batches of ``batch_size``."""
    with torch.inference_mode():
        return torch.cat(
            [
                quantized(preprocess(images.images[i : i + batch_size]).contiguous(memory_format=torch.channels_last))
                for i in range(0, len(images), batch_size)
            ]
        )


def ablate_precision(
    args: argparse.Namespace, model: torch.nn.Module, images: tuple, preprocess, bf16_ok: bool
) -> dict:
    """5. Precision: fp32 vs bf16 (vs int8, for comparison) features, same images, same head training."""
    import tlhelpers as tl

    train, test = images

    def accuracies(features: tuple[torch.Tensor, torch.Tensor]) -> dict:
        spread = accuracy_by_seed((features[0], train.labels), (features[1], test.labels), args.seeds)
        return {f"accuracy_epochs_{epochs}": accs for epochs, accs in spread.items()}

    precision, features = {}, {}
    for name, amp in (("fp32", False), ("bf16", True)):
        t = time.perf_counter()
        options = {"batch_size": args.embed_batch, "amp": amp, "fold_bn": bool(args.fold_bn)}
        features[name] = tuple(tl.embed(model, split, preprocess, **options)[0] for split in (train, test))
        precision[name] = {"embed_seconds": time.perf_counter() - t, **accuracies(features[name])}
    t = time.perf_counter()
    quantized = int8_model(model, preprocess(train.images[:32]))
    if quantized is not None:
        features["int8"] = tuple(int8_features(quantized[0], d, preprocess, args.embed_batch) for d in (train, test))
        precision["int8"] = {
            "embed_seconds": time.perf_counter() - t,
            "quantize_seconds": quantized[1],
            **accuracies(features["int8"]),
            "note": "torch.ao static quantization, x86 backend, calibrated on 32 train images; deprecated API",
        }
    for name, (train_features, _) in features.items():
        cos = torch.nn.functional.cosine_similarity(features["fp32"][0], train_features, dim=1)
        precision[name]["cosine_to_fp32"] = {"mean": cos.mean().item(), "min": cos.min().item()}
    precision["bf16_autocast_active"] = bf16_ok
    return precision


WORKERS = {
    "prepare": worker_prepare,
    "course": worker_course,
    "ablate": worker_ablate,
    "anchor-scaling": worker_anchor_scaling,
}


# ---------------------------------------------------------------- orchestration


def worker_cmd(kind: str, args: argparse.Namespace, **over) -> list[str]:
    """The command line of a ``kind`` worker: every option of ``args`` as a flag, as overridden by ``over``.

    The hidden options (``help=SUPPRESS``: worker-only settings) are passed only where ``over`` sets them."""
    values = {**vars(args), **over}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
    for action in build_parser()._actions:
        value, flag = values.get(action.dest), action.option_strings[0]
        hidden = action.help == argparse.SUPPRESS and action.dest not in over  # --worker too: set above
        if value is None or hidden:
            continue
        if action.nargs == 0:  # store_true
            cmd += [flag] if value else []
        elif action.nargs == "+":
            cmd += [flag, *map(str, value)]
        else:
            cmd += [flag, str(value)]
    return cmd


def child_env(torch_home: Path | None = None) -> dict:
    """The environment of a measured child: this checkout's tlhelpers, no quick mode, and ``$TORCH_HOME``."""
    env = dict(os.environ)
    env.pop("TLHELPERS_QUICK", None)
    # Workers measure this checkout's tlhelpers, even where another copy is pip-installed in the environment.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if torch_home is not None:
        env["TORCH_HOME"] = str(torch_home)
    return env


def run_worker(kind: str, args: argparse.Namespace, env: dict, **over) -> tuple[dict, dict]:
    """Run one worker process: the result it prints (JSON) and its process stats."""
    out, stats = run_child(worker_cmd(kind, args, **over), env=env)
    return last_json(out), stats


# Runs a script file unchanged as __main__, then exits without interpreter teardown, as the workers do: with this
# torch build (CUDA wheel) a normal exit alone adds ~100 MB to a process's peak RSS (measured: "import_baseline").
RUN_AND_EXIT = (
    "import os, runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
    "sys.stdout.flush(); os._exit(0)"
)
IMPORTS = "import torch, torchvision, tlhelpers"


def import_baseline() -> dict:
    """Peak RSS of a process that only imports torch, torchvision and tlhelpers: with and without normal exit."""
    _, quick = run_child([sys.executable, "-c", IMPORTS + "; import os; os._exit(0)"], env=child_env())
    _, normal = run_child([sys.executable, "-c", IMPORTS], env=child_env())
    return {"peak_rss_mb": quick["peak_rss_mb"], "peak_rss_mb_with_normal_exit": normal["peak_rss_mb"]}


def run_anchor(batches: Path, torch_home: Path) -> dict:
    """The anchor file, unchanged, in a temp dir whose ./data holds the rebuilt batches."""
    with tempfile.TemporaryDirectory(prefix="tl-anchor-") as tmp:
        (Path(tmp) / "data").mkdir()
        (Path(tmp) / "data" / "cifar-10-batches-py").symlink_to(batches)
        out, stats = run_child(
            [sys.executable, "-c", RUN_AND_EXIT, str(ANCHOR_DIR / "seed_cifar_workflow.py")],
            cwd=Path(tmp),
            env=child_env(torch_home),
        )
    m = re.search(r"(\{.*\})\s+test_accuracy\s+([0-9.]+)", out)
    if not m:
        raise RuntimeError(f"Unexpected anchor output: {out[-500:]}")
    # The anchor prints a dict of floats, {'filter': 21.5, ...}: a Python literal, read without running it
    phases = ast.literal_eval(m.group(1))
    phases["setup"] = phases["total"] - phases["filter"] - phases["train_1_epoch"] - phases["eval"]
    return {"phases": {k: phases[k] for k in PHASES}, "test_accuracy": float(m.group(2)), **stats}


def run_course(args: argparse.Namespace, env: dict | None = None, **over) -> dict:
    """The course workflow in its own process: its result and its process stats."""
    result, stats = run_worker("course", args, {**child_env(), **(env or {})}, **over)
    return {**result, **stats}


def measured(course: dict) -> dict:
    """A course run's phases, peak RSS and test accuracy: the measured columns of a table row."""
    return {**course["phases"], "peak_rss_mb": course["peak_rss_mb"], "test_accuracy": course["test_accuracy"]}


def summarize(results: dict) -> dict:
    """Speedups, targets, noise and floor from the raw measurements (fills the derived keys of ``results``)."""
    anchor, course = results.get("anchor"), results["course"]
    if anchor:
        phases = ("filter", "train_1_epoch", "eval", "total")
        results["speedup"] = {k: anchor["phases"][k] / course["phases"][k] for k in phases}
        pa, pc, n = anchor["test_accuracy"], course["test_accuracy"], results["config"]["n_test"]
        se = float(np.sqrt(pa * (1 - pa) / n + pc * (1 - pc) / n))
        results["accuracy_noise"] = {"se_difference": se, "difference": pc - pa, "within_noise": pc >= pa - 1.96 * se}
    results["targets"] = targets(results)
    forward = results.get("techniques", {}).get("forward")
    if forward:
        results["floor"] = forward_floor(forward["ladder"], results["config"], course)
    return results


def targets(results: dict) -> dict:
    """Each target's value, goal and whether it is met."""
    anchor, course = results.get("anchor"), results["course"]
    goals = {}
    if anchor:
        speedup = results["speedup"]["total"]
        goals["total_speedup"] = {"value": speedup, "target": ">= 5", "met": speedup >= 5}
        goals["accuracy"] = {
            "value": f"{course['test_accuracy']:.3f} vs {anchor['test_accuracy']:.3f}",
            "target": "equal within noise or better",
            "met": results["accuracy_noise"]["within_noise"],
        }
    ratio = course["train_10_epochs"] / course["phases"]["train_1_epoch"]
    goals["ten_epochs_over_one"] = {"value": ratio, "target": "<= 1.2", "met": ratio <= 1.2}
    gb = course["peak_rss_mb"] / 1000
    goals["course_peak_rss_gb"] = {"value": gb, "target": "<= 1.0", "met": gb <= 1.0}
    return goals


def forward_floor(ladder: list[dict], config: dict, course: dict) -> dict:
    """The floor: one backbone forward over all the images at the best setting of the ladder, vs the course."""
    ms = {x["config"]: x["ms_per_image"] for x in ladder if "int8" not in x["config"]}  # int8: not used
    best = min(ms.values())
    n_images = config["n_train"] + config["n_test"]
    return {
        "ms_per_image": best,
        "best_config": min(ms, key=ms.get),
        "n_images": n_images,
        "seconds": best * n_images / 1000,
        "fp32_seconds": ms["eval + inference_mode, fp32, batch 32"] * n_images / 1000,
        "course_total_over_floor": course["phases"]["total"] / (best * n_images / 1000),
        "course_forward_seconds": course["embed_train"] + course["phases"]["eval"],
    }


# ---------------------------------------------------------------- report


def fmt(v, nd: int = 2) -> str:
    """``v`` with ``nd`` decimals; a dash for None or NaN."""
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def markdown(results: dict) -> str:
    """perf.md: the side-by-side table and the targets, then the techniques and the scaling where measured."""
    lines = md_overview(results) + md_targets(results["targets"]) + md_course_accuracy(results)
    if "floor" in results:
        lines += md_floor(results["floor"])
    if results.get("techniques"):
        lines += md_techniques(results)
    if results.get("scaling"):
        lines += md_scaling(results["scaling"])
    return "\n".join(lines) + "\n"


def md_overview(results: dict) -> list[str]:
    """The title, the machine and settings, and the side-by-side table of the workflows."""
    machine, config = results["machine"], results["config"]
    provisional = " — PROVISIONAL random weights: accuracies meaningless." if results["weights"]["provisional"] else "."
    lines = [
        "# Performance: the source's cat-vs-dog workflow vs the course's",
        "",
        f"One run on {machine['cpu']} ({machine['threads']} threads, torch {machine['torch']}), "
        f"{results['timestamp']}. Weights: {results['weights']['name']}{provisional}",
        "",
        f"{config['n_train']} train / {config['n_test']} test images ({config['selection']}), ResNet18 at "
        f"{config['image_size']} px, batch {config['batch_size']}, Adam {config['lr']}, {config['epochs']} epoch of "
        "feature extraction.",
        "",
        "| workflow | filter/load s | setup s | train 1 epoch s | eval s | total s | peak RSS MB | test acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    workflows = [
        ("anchor (source text)", results.get("anchor")),
        ("course (tlhelpers)", results["course"]),
        ("course, backbone's own preprocessing", results.get("course_native")),
    ]
    for name, workflow in workflows:
        if workflow:
            seconds = " | ".join(fmt(workflow["phases"][k]) for k in PHASES)
            lines.append(f"| {name} | {seconds} | {workflow['peak_rss_mb']:.0f} | {workflow['test_accuracy']:.3f} |")
    if "speedup" in results:
        speedup = results["speedup"]
        lines.append(
            f"| **speedup** | {speedup['filter']:.0f}x | | {speedup['train_1_epoch']:.1f}x | {speedup['eval']:.1f}x | "
            f"**{speedup['total']:.1f}x** | | |"
        )
    return lines


def md_targets(targets: dict) -> list[str]:
    """The table of targets."""
    lines = ["", "| target | value | goal | met |", "|---|---|---|---|"]
    for name, target in targets.items():
        value = target["value"] if isinstance(target["value"], str) else f"{target['value']:.2f}"
        lines.append(f"| {name} | {value} | {target['target']} | {'yes' if target['met'] else '**no**'} |")
    return lines


def md_course_accuracy(results: dict) -> list[str]:
    """The course's 10 head epochs, its accuracy over head seeds, and the noise of the accuracy difference."""
    course = results["course"]
    one, ten = course["accuracy_by_seed"]["epochs_1"], course["accuracy_by_seed"]["epochs_10"]
    lines = [
        "",
        f"Course, 10 head epochs on cached features: {course['train_10_epochs']:.2f} s "
        f"(feature extraction {course['embed_train']:.2f} s + 10 head epochs {course['head_10_epochs']:.3f} s), "
        f"test accuracy {course['test_accuracy_10_epochs']:.3f}. Accuracy over {len(one)} head seeds: "
        f"1 epoch {np.mean(one):.3f} ± {np.std(one):.3f}, 10 epochs {np.mean(ten):.3f} ± {np.std(ten):.3f}.",
    ]
    if "accuracy_noise" in results:
        lines.append(
            "Binomial standard error of the anchor–course accuracy difference on "
            f"{results['config']['n_test']} test images: {results['accuracy_noise']['se_difference']:.3f}."
        )
    return lines


def md_floor(floor: dict) -> list[str]:
    """The floor: one backbone forward over all the images, vs the course's total."""
    return [
        "",
        f"**Floor**: one backbone forward over the {floor['n_images']} images at the best measured setting "
        f"({floor['best_config']}, {floor['ms_per_image']:.2f} ms/image) = {floor['seconds']:.1f} s (fp32 "
        f"inference_mode: {floor['fp32_seconds']:.1f} s). The course workflow's total is "
        f"{floor['course_total_over_floor']:.2f}x the floor (its two embed calls take "
        f"{floor['course_forward_seconds']:.1f} s).",
    ]


def md_techniques(results: dict) -> list[str]:
    """The section on what each technique bought: its table, the forward ladder and the details."""
    techniques, breakdown = results["techniques"], results["techniques"]["filter_breakdown"]
    lines = md_technique_table(results) + md_forward_ladder(techniques["forward"])
    if "course_settings" in techniques:
        lines += md_course_settings(techniques["course_settings"])
    if "import_baseline" in techniques:
        lines += md_import_baseline(techniques["import_baseline"])
    if "ms_per_image_to_pil_resize_normalize" in breakdown:
        lines += md_filter_cost(breakdown)
    if "same_images" in techniques:
        lines += md_same_images(techniques["same_images"])
    return lines


def md_technique_table(results: dict) -> list[str]:
    """The table of techniques, each with the time before and after it."""
    techniques, course, config = results["techniques"], results["course"], results["config"]
    breakdown, transforms = techniques["filter_breakdown"], techniques["transforms"]
    caching, precision = techniques["caching"], techniques["precision"]
    lines = ["", "## What each technique bought", "", "| technique | before | after |", "|---|---|---|"]
    if "anchor" in results:
        lines.append(
            "| label filtering without decoding | anchor's filter loop "
            f"{results['anchor']['phases']['filter']:.1f} s (decodes + resizes all 60,000) | labels only "
            f"{breakdown['labels_only_select'] * 1000:.0f} ms + decode the {breakdown['n_selected']} chosen JPEGs "
            f"{breakdown['decode_selected']:.2f} s |"
        )
    lines.append(
        f"| batched tensor transforms ({transforms['n_images']} images to 224 px) | per-image PIL via DataLoader "
        f"{fmt(transforms['per_image_pil_dataloader'])} s | torchvision preset on batches "
        f"{transforms['batched_torchvision_preset']:.2f} s; tlhelpers BatchPreprocess (normalize at 32 px, resize "
        f"last) {transforms['batched_tlhelpers']:.2f} s (max difference {transforms['max_abs_difference']:.4f}) |"
    )
    if "anchor" in results:
        lines.append(
            f"| feature caching (10 epochs) | 10 x uncached epoch {caching['uncached_epoch']:.1f} s = "
            f"{10 * caching['uncached_epoch']:.0f} s (estimated) | {course['train_10_epochs']:.1f} s measured |"
        )
    fp32, bf16 = precision["fp32"], precision["bf16"]
    lines.append(
        f"| bf16 autocast: features for {config['n_train'] + config['n_test']} images | fp32 "
        f"{fp32['embed_seconds']:.1f} s, acc {np.mean(fp32['accuracy_epochs_10']):.3f} (10 ep, mean of seeds) | "
        f"bf16 {bf16['embed_seconds']:.1f} s, acc {np.mean(bf16['accuracy_epochs_10']):.3f}; feature cosine to "
        f"fp32 {bf16['cosine_to_fp32']['mean']:.4f} |"
    )
    lines += md_ladder_technique_rows(techniques, course)
    if "int8" in precision:
        int8 = precision["int8"]
        lines.append(
            f"| int8 static quantization (not used: deprecated torch.ao API) | fp32 as above | int8 "
            f"{int8['embed_seconds']:.1f} s incl. {int8['quantize_seconds']:.1f} s to quantize, acc "
            f"{np.mean(int8['accuracy_epochs_10']):.3f}; cosine to fp32 {int8['cosine_to_fp32']['mean']:.4f} |"
        )
    return lines


def md_ladder_technique_rows(techniques: dict, course: dict) -> list[str]:
    """The technique rows read off the forward ladder: BatchNorm folding, and glibc keeping freed memory."""
    ms = {x["config"]: x["ms_per_image"] for x in techniques["forward"]["ladder"]}

    def ms_for(words: str, kept: bool = False) -> float | None:
        return next((v for k, v in ms.items() if words in k and ("freed memory kept" in k) == kept), None)

    unfolded = ms_for("channels_last + bf16 autocast, batch 16")
    folded = ms_for("BN folded into bf16 weights (tl.embed)")
    kept = ms_for("", kept=True)
    lines = []
    if unfolded and folded:
        lines.append(
            f"| BatchNorm folded into the convolutions (bf16 weights), batch 16 | {unfolded:.2f} ms/image | "
            f"{folded:.2f} ms/image (ladder below) |"
        )
    no_tune = [x for x in techniques.get("course_settings", []) if x.get("reuse_freed_memory") is False]
    if kept and folded:
        after = f"{kept:.2f} ms/image"
        if no_tune and course.get("reuse_freed_memory"):
            after += (
                f"; course total {course['phases']['total']:.2f} s vs {no_tune[0]['total']:.2f} s without it "
                "(TLHELPERS_MALLOC_TUNE=0, one run each)"
            )
        lines.append(
            "| glibc malloc keeps freed activation buffers for the next batch (tl.device.reuse_freed_memory(), "
            f"opt-in) | {folded:.2f} ms/image | {after} |"
        )
    return lines


def md_forward_ladder(forward: dict) -> list[str]:
    """The forward ladder: ms per image of each configuration, and its speed relative to fp32 inference_mode."""
    ladder = forward["ladder"]
    base = next(x["ms_per_image"] for x in ladder if x["config"].startswith("eval + inference_mode, fp32"))
    lines = [
        "",
        f"Backbone forward at 224 px, ms per image (best of {forward['reps']} interleaved rounds over "
        f"{forward['n_images']} images; lower is better):",
        "",
        "| configuration | ms/image | vs fp32 inference_mode |",
        "|---|---:|---:|",
    ]
    return lines + [f"| {x['config']} | {x['ms_per_image']:.2f} | {base / x['ms_per_image']:.2f}x |" for x in ladder]


def md_course_settings(settings: list[dict]) -> list[str]:
    """The table of course workflow settings, one process each."""
    lines = [
        "",
        "Course workflow settings (each its own process; one run each):",
        "",
        "| embed batch | BN folded | preprocessing | freed memory kept | total s | train 1 epoch s | eval s | "
        "peak RSS MB | test acc |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for x in settings:
        preprocessing = "BatchPreprocess" if x["fast_preprocess"] else "torchvision preset"
        lines.append(
            f"| {x['embed_batch']} | {x['fold_bn']} | {preprocessing} | {x.get('reuse_freed_memory', '-')} | "
            f"{x['total']:.2f} | {x['train_1_epoch']:.2f} | {x['eval']:.2f} | {x['peak_rss_mb']:.0f} | "
            f"{x['test_accuracy']:.3f} |"
        )
    return lines


def md_import_baseline(baseline: dict) -> list[str]:
    """The memory floor: the peak RSS of a process that only imports."""
    return [
        "",
        "Memory floor: a process that only imports torch, torchvision and tlhelpers peaks at "
        f"{baseline['peak_rss_mb']:.0f} MB ({baseline['peak_rss_mb_with_normal_exit']:.0f} MB if Python exits "
        "normally: the workflows are measured up to their end, without the teardown).",
    ]


def md_filter_cost(breakdown: dict) -> list[str]:
    """Why the anchor's filter loop is slow, per image."""
    return [
        "",
        "Why the anchor's filter is slow: `dataset[i]` builds a PIL image "
        f"({breakdown['ms_per_image_to_pil']:.3f} ms) and runs Resize(224)+ToTensor+Normalize "
        f"({breakdown['ms_per_image_to_pil_resize_normalize']:.2f} ms in total per image), only for the loop to "
        f"read the label: x 60,000 = {breakdown['estimated_loop_60000']:.0f} s estimated. Reading "
        f"`dataset.targets` for all 50,000 takes {breakdown['targets_lookup'] * 1000:.1f} ms.",
    ]


def md_same_images(same_images: dict) -> list[str]:
    """Whether the course's selection is the anchor's images."""
    splits = "; ".join(
        f"{split}: labels equal {v['labels_equal']}, max pixel diff {v['max_abs_pixel_diff']} "
        "(PIL vs torchvision JPEG decode)"
        for split, v in same_images.items()
    )
    return ["", "Same images: " + splits]


def md_scaling(scaling: dict) -> list[str]:
    """The scaling section: total seconds vs training images, both workflows."""
    anchor_rows = {x["n_train"]: x for x in scaling.get("anchor", [])}
    lines = [
        "",
        "## Scaling (total seconds vs training images, 200 test images)",
        "",
        "| n_train | anchor s | course s | course peak RSS MB |",
        "|---:|---:|---:|---:|",
    ]
    for x in scaling["course"]:
        anchor_total = fmt(anchor_rows.get(x["n_train"], {}).get("total"), 1)
        lines.append(f"| {x['n_train']} | {anchor_total} | {x['total']:.1f} | {x['peak_rss_mb']:.0f} |")
    return lines + ["", scaling["method"], "", "![scaling](perf_scaling.png)"]


def plot_scaling(scaling: dict, path: Path) -> None:
    """perf_scaling.png: total seconds vs training images, log-log, both workflows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in (
        ("anchor", "source text's workflow (anchor)", "o-"),
        ("course", "course (tlhelpers)", "s-"),
    ):
        rows = scaling.get(key) or []
        if rows:
            ax.plot([x["n_train"] for x in rows], [x["total"] for x in rows], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training images (cat + dog)")
    ax.set_ylabel("total seconds, 1 epoch + eval on 200")
    ax.set_title("Feature extraction time vs training-set size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results: dict, out: Path) -> None:
    """perf.json and perf.md into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "perf.md").write_text(markdown(results))


# ---------------------------------------------------------------- the run


def main(args: argparse.Namespace) -> dict:
    """The whole benchmark, each workflow in its own process; the results are written after each part."""
    out = Path(args.out)
    prep, _ = run_worker("prepare", args, child_env())
    args.jpeg_root = Path(prep["jpeg_root"])
    results = new_results(args, prep)
    batches = torch_home = None
    if not args.course_only:
        batches = prepare_batches(args.jpeg_root, Path(prep["bench_cache"]))
        torch_home = Path(prep["torch_home"])
        print("anchor ...", flush=True)
        results["anchor"] = run_anchor(batches, torch_home)
    print("course ...", flush=True)
    results["course"] = run_course(args, selection="anchor")
    results["course_native"] = run_course(args, selection="anchor", native=True)
    write(summarize(results), out)
    if not args.no_ablation:
        results["techniques"] = run_ablation(args, batches)
        write(summarize(results), out)
    if not args.no_scaling:
        results["scaling"] = run_scaling(args, batches, torch_home)
        plot_scaling(results["scaling"], out / "perf_scaling.png")
        write(results, out)
    print(markdown(results))
    return results


def new_results(args: argparse.Namespace, prep: dict) -> dict:
    """The results' header: schema, time, command, machine, weights and configuration."""
    return {
        "schema": SCHEMA,
        "timestamp": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/perf_workflow.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu": cpu_name(),
            **prep["machine"],
            "avx512_bf16": has_cpu_flag("avx512_bf16"),
            "amx": has_cpu_flag("amx_bf16"),
        },
        "weights": prep["weights"],
        "config": {
            "n_train": args.n_train,
            "n_test": args.n_test,
            "image_size": 224,
            "batch_size": 32,
            "lr": 1e-3,
            "epochs": 1,
            "embed_batch": args.embed_batch,
            "fold_bn": bool(args.fold_bn),
            "fast_preprocess": bool(args.fast_preprocess),
            "selection": "the anchor's first cat/dog indices in batch file order (same images)",
        },
    }


def run_ablation(args: argparse.Namespace, batches: Path | None) -> dict:
    """The techniques: the ablation worker, then the course workflow's settings and the import baseline."""
    print("ablation ...", flush=True)
    techniques, _ = run_worker("ablate", args, child_env(), data_root=batches.parent if batches else None)
    print("course settings ...", flush=True)
    sweep = []
    for over in (
        {"embed_batch": 16},
        {"embed_batch": 32},
        {"embed_batch": 64},
        {"fold_bn": 1 - args.fold_bn},
        {"fast_preprocess": 1 - args.fast_preprocess},
        {"env": {"TLHELPERS_MALLOC_TUNE": "0"}},
    ):
        course = run_course(args, selection="anchor", seeds=1, **over)
        sweep.append(
            {
                "embed_batch": course["embed_options"]["batch_size"],
                "fold_bn": course["embed_options"]["fold_bn"],
                "fast_preprocess": "BatchPreprocess" in course["preprocess"],
                "reuse_freed_memory": course.get("reuse_freed_memory"),
                **measured(course),
            }
        )
    techniques["course_settings"] = sweep
    techniques["import_baseline"] = import_baseline()
    return techniques


SCALING_METHOD = (
    "Anchor: a parameterised copy of its logic in this script (the anchor file itself is never "
    "modified); its filter loop enumerates all 60,000 images whatever the size, so it is run once and "
    "its measured time counted at every size; setup, one training epoch over the first n cat/dog "
    "images and eval on 200 are measured per size. Course: tlhelpers' balanced seeded subset "
    "(load_cifar_pair), one subprocess per size, all phases measured."
)


def run_scaling(args: argparse.Namespace, batches: Path | None, torch_home: Path | None) -> dict:
    """Time vs training-set size: the anchor's logic in one process for all sizes, the course's one per size."""
    scaling = {"sizes": args.sizes}
    if not args.course_only:
        print("scaling: anchor ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="tl-anchor-") as tmp:
            (Path(tmp) / "cifar-10-batches-py").symlink_to(batches)
            anchor, _ = run_worker("anchor-scaling", args, child_env(torch_home), data_root=tmp, sizes=args.sizes)
        scaling["anchor"] = anchor["rows"]
    print("scaling: course ...", flush=True)
    scaling["course"] = []
    for n in args.sizes:
        course = run_course(args, selection="balanced", n_train=n, seeds=1)
        scaling["course"].append({"n_train": course["n_train"], **measured(course)})
    scaling["method"] = SCALING_METHOD
    return scaling


def build_parser() -> argparse.ArgumentParser:
    """The command line; the hidden options (``help=SUPPRESS``) are the workers' own."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    p.add_argument(
        "--jpeg-root",
        type=Path,
        default=None,
        help="the unpacked CIFAR-10 JPEG tree (default: tlhelpers' cache, $TLHELPERS_CIFAR_DIR)",
    )
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--embed-batch", type=int, default=16, help="batch size of the course's frozen-backbone forward")
    on_off = {"type": int, "choices": [0, 1], "default": 1}  # a setting switched by 0 / 1, on by default
    p.add_argument(
        "--fast-preprocess", **on_off, help="course: tlhelpers.embed.BatchPreprocess instead of torchvision's preset"
    )
    p.add_argument(
        "--fold-bn", **on_off, help="course: fold BatchNorm into the convolutions for embedding (tl.embed's default)"
    )
    p.add_argument("--seeds", type=int, default=10, help="head seeds for the accuracy spread")
    p.add_argument(
        "--sizes", type=int, nargs="+", default=[250, 1000, 4000, 10000], help="training-set sizes to scale over"
    )
    p.add_argument("--course-only", action="store_true", help="skip the anchor (smoke test; no rebuilt batches needed)")
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument("--no-scaling", action="store_true")
    p.add_argument("--forward-images", type=int, default=128, help="images per forward-ladder configuration")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds of the forward ladder (best kept)")
    p.add_argument("--probe-images", type=int, default=2000, help="images for the per-image filter-loop cost")
    p.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--selection", choices=["anchor", "balanced"], default="anchor", help=argparse.SUPPRESS)
    p.add_argument("--native", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fp32", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, default=1e-3, help=argparse.SUPPRESS)
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line."""
    return build_parser().parse_args(argv)


if __name__ == "__main__":
    args = parse()
    if args.worker:
        if args.worker != "prepare" and args.jpeg_root is None:
            from tlhelpers.data import cifar_dir

            args.jpeg_root = cifar_dir()
        print(json.dumps(WORKERS[args.worker](args), default=float), flush=True)
        os._exit(0)  # skip interpreter teardown: with this torch build it alone raises peak RSS by ~100 MB
    else:
        main(args)
