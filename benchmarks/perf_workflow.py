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

import numpy as np

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
    try:
        return f" {flag}" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def cpu_name() -> str:
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


# ---------------------------------------------------------------- workers (run as subprocesses)


def worker_prepare(a: argparse.Namespace) -> dict:
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
        "jpeg_root": str(a.jpeg_root or cifar_dir()),
        "torch_home": None if a.course_only else str(prepare_standin()),
    }


def worker_course(a: argparse.Namespace) -> dict:
    """The course's workflow through tlhelpers, timed phase by phase like the anchor (imports are not timed)."""
    import tlhelpers as tl
    from tlhelpers.data import ImageTensors, decode_files
    from tlhelpers.embed import fast_preprocess

    # opt-in in tlhelpers; part of the course's workflow here (off: TLHELPERS_MALLOC_TUNE=0)
    tl.device.reuse_freed_memory()
    T0 = time.perf_counter()
    m: dict[str, float] = {}
    if a.selection == "anchor":  # the anchor's exact images, found from labels alone
        train_files, train_labels = anchor_selection(a.jpeg_root, "train", a.n_train)
        test_files, test_labels = anchor_selection(a.jpeg_root, "test", a.n_test)
        m["filter_select"] = time.perf_counter() - T0
        train = ImageTensors(decode_files(train_files), train_labels, ["cat", "dog"])
        test = ImageTensors(decode_files(test_files), test_labels, ["cat", "dog"])
    else:  # the course's own balanced, seeded subset
        train, test = tl.load_cifar_pair(("cat", "dog"), a.n_train, a.n_test, seed=0, source="folder", root=a.jpeg_root)
        m["filter_select"] = float("nan")
    m["filter"] = time.perf_counter() - T0
    m["filter_decode"] = m["filter"] - m["filter_select"]

    t = time.perf_counter()
    model, native = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.freeze(model)
    tl.unfreeze(model, "fc")
    preprocess = native if a.native else anchor_preprocess()  # the anchor's Resize(224) + Normalize(ImageNet)
    if a.fast_preprocess:
        preprocess = fast_preprocess(preprocess)  # same maths, normalize at 32 px, then resize once in float
    m["setup"] = time.perf_counter() - t

    t = time.perf_counter()
    fast = {"batch_size": a.embed_batch, "amp": not a.fp32, "fold_bn": bool(a.fold_bn)}
    f_train, y_train = tl.embed(model, train, preprocess, **fast)
    m["embed_train"] = time.perf_counter() - t
    head, _ = tl.fit_head(f_train, y_train, 2, epochs=1, lr=a.lr, batch_size=32, seed=0, progress=False)
    model.fc = head
    m["train_1_epoch"] = time.perf_counter() - t

    t = time.perf_counter()
    f_test, y_test = tl.embed(model, test, preprocess, **fast)
    with torch.inference_mode():
        acc = (head(f_test).argmax(1) == y_test).float().mean().item()
    m["eval"] = time.perf_counter() - t
    m["total"] = time.perf_counter() - T0

    # Beyond the timed one-epoch workflow: 10 head epochs on the same cached features, and the seed spread.
    t = time.perf_counter()
    head10, _ = tl.fit_head(f_train, y_train, 2, epochs=10, lr=a.lr, batch_size=32, seed=0, progress=False)
    m["head_10_epochs"] = time.perf_counter() - t
    m["train_10_epochs"] = m["embed_train"] + m["head_10_epochs"]

    def accuracy(epochs: int, seed: int) -> float:
        h, _ = tl.fit_head(f_train, y_train, 2, epochs=epochs, lr=a.lr, batch_size=32, seed=seed, progress=False)
        with torch.inference_mode():
            return (h(f_test).argmax(1) == y_test).float().mean().item()

    seeds = range(a.seeds)
    return {
        "phases": {k: m[k] for k in ("filter", "setup", "train_1_epoch", "eval", "total")},
        **{k: m[k] for k in ("filter_select", "filter_decode", "embed_train", "head_10_epochs", "train_10_epochs")},
        "test_accuracy": acc,
        "test_accuracy_10_epochs": accuracy(10, 0),
        "accuracy_by_seed": {
            "epochs_1": [accuracy(1, s) for s in seeds],
            "epochs_10": [accuracy(10, s) for s in seeds],
        },
        "n_train": len(train),
        "n_test": len(test),
        "threads": torch.get_num_threads(),
        "embed_options": fast,
        "reuse_freed_memory": tl.device.reuse_freed_memory(),
        "preprocess": repr(preprocess).replace("\n", " "),
        "image_size": int(preprocess(train.images[:1]).shape[-1]),
    }


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


def worker_anchor_scaling(a: argparse.Namespace) -> dict:
    """A parameterised copy of the anchor's logic: its filter loop once (it enumerates all 60,000 images
    whatever ``n``), then for each training-set size its model setup, one training epoch and its eval."""
    import torch.nn as nn
    from torch.utils.data import DataLoader, Subset
    from torchvision import models

    T0 = time.perf_counter()
    train_full, test_full, _ = _anchor_objects(a.data_root)
    selected = list(CAT_DOG)
    train_idx = [i for i, (_, label) in enumerate(train_full) if label in selected]
    test_idx = [i for i, (_, label) in enumerate(test_full) if label in selected][: a.n_test]
    filt = time.perf_counter() - T0
    rows = []
    for n in a.sizes:
        t0 = time.perf_counter()
        torch.manual_seed(0)
        train_loader = DataLoader(Subset(train_full, train_idx[:n]), batch_size=32, shuffle=True)
        test_loader = DataLoader(Subset(test_full, test_idx), batch_size=32, shuffle=False)
        model = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
        for p in model.parameters():
            p.requires_grad = False
        model.fc = nn.Linear(model.fc.in_features, 2)
        criterion, optimizer = nn.CrossEntropyLoss(), torch.optim.Adam(model.fc.parameters(), lr=1e-3)
        setup = time.perf_counter() - t0
        t = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            labels = torch.tensor([selected.index(label.item()) for label in labels])
            optimizer.zero_grad()
            criterion(model(images), labels).backward()
            optimizer.step()
        train = time.perf_counter() - t
        t = time.perf_counter()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in test_loader:
                labels = torch.tensor([selected.index(label.item()) for label in labels])
                correct += (model(images).argmax(1) == labels).sum().item()
                total += labels.size(0)
        ev = time.perf_counter() - t
        rows.append(
            {
                "n_train": len(train_idx[:n]),
                "filter": filt,
                "setup": setup,
                "train_1_epoch": train,
                "eval": ev,
                "total": filt + setup + train + ev,
                "test_accuracy": correct / total,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"rows": rows}


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
    import copy
    import warnings

    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            torch.backends.quantized.engine = "x86"
            body = torch.nn.Sequential(*list(copy.deepcopy(model).eval().children())[:-1], torch.nn.Flatten(1))
            q = prepare_fx(body, get_default_qconfig_mapping("x86"), example_inputs=(calib[:1],))
            with torch.inference_mode():
                q(calib)
            q = convert_fx(q)
    except Exception:
        return None
    return q, time.perf_counter() - t


def worker_ablate(a: argparse.Namespace) -> dict:
    """What each technique buys, measured on the anchor's images with the same weights."""
    import torch.nn as nn
    from torch.utils.data import DataLoader, Subset

    import tlhelpers as tl
    from tlhelpers.data import ImageTensors, decode_files
    from tlhelpers.embed import fast_preprocess, fold_batchnorm

    out: dict[str, dict] = {}
    preprocess = anchor_preprocess()

    # 1. Filtering: the anchor's loop decodes and transforms every image to read its label.
    t = time.perf_counter()
    tf, ty = anchor_selection(a.jpeg_root, "train", a.n_train)
    ef, ey = anchor_selection(a.jpeg_root, "test", a.n_test)
    select = time.perf_counter() - t
    t = time.perf_counter()
    train = ImageTensors(decode_files(tf), ty, ["cat", "dog"])
    test = ImageTensors(decode_files(ef), ey, ["cat", "dog"])
    decode = time.perf_counter() - t
    fb = {"labels_only_select": select, "decode_selected": decode, "n_selected": len(tf) + len(ef)}
    if a.data_root:
        t = time.perf_counter()
        train_full, test_full, transform = _anchor_objects(a.data_root)
        fb["load_pickled_batches"] = time.perf_counter() - t
        k = a.probe_images
        t = time.perf_counter()
        np.flatnonzero(np.isin(np.asarray(train_full.targets), CAT_DOG))
        fb["targets_lookup"] = time.perf_counter() - t
        train_full.transform = None
        t = time.perf_counter()
        for i in range(k):
            train_full[i]
        fb["ms_per_image_to_pil"] = (time.perf_counter() - t) * 1000 / k
        train_full.transform = transform
        t = time.perf_counter()
        for i in range(k):
            train_full[i]
        fb["ms_per_image_to_pil_resize_normalize"] = (time.perf_counter() - t) * 1000 / k
        fb["estimated_loop_60000"] = fb["ms_per_image_to_pil_resize_normalize"] * 60000 / 1000
        fb["probe_images"] = k
        # 2. Transforms: per-image PIL path through Dataset + DataLoader vs one batched tensor transform.
        idx = [i for i, y in enumerate(train_full.targets) if y in CAT_DOG][: a.n_train]
        t = time.perf_counter()
        for _ in DataLoader(Subset(train_full, idx), batch_size=32):
            pass
        per_image = time.perf_counter() - t
    else:
        per_image = float("nan")

    def batched_seconds(transform) -> float:
        t = time.perf_counter()
        for i in range(0, len(train), 32):
            transform(train.images[i : i + 32])
        return time.perf_counter() - t

    fast = fast_preprocess(preprocess)
    batched_seconds(fast)  # warm-up
    if a.data_root:
        out["same_images"] = check_same_images(
            Path(a.data_root) / "cifar-10-batches-py", a.jpeg_root, a.n_train, a.n_test
        )
    out["filter_breakdown"] = fb
    out["transforms"] = {
        "n_images": len(train),
        "per_image_pil_dataloader": per_image,
        "batched_torchvision_preset": batched_seconds(preprocess),
        "batched_tlhelpers": batched_seconds(fast),
        "max_abs_difference": (preprocess(train.images[:64]) - fast(train.images[:64])).abs().max().item(),
    }
    preprocess = fast if a.fast_preprocess else preprocess

    # 3. The forward pass: a ladder of techniques, ms per image on preprocessed 224 px batches.
    model, _ = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.freeze(model)
    tl.unfreeze(model, "fc")
    n = a.forward_images
    x = torch.cat([preprocess(train.images[i : i + 64]) for i in range(0, n, 64)])[:n]
    y = train.labels[:n]

    def batches(bs: int, cl: bool = False, x: torch.Tensor = x) -> list[torch.Tensor]:
        return [
            (x[i : i + bs].contiguous(memory_format=torch.channels_last) if cl else x[i : i + bs].contiguous())
            for i in range(0, n, bs)
        ]

    def anchor_step(net: nn.Module):  # what the anchor does per batch while training (BatchNorm in train mode)
        def fn(b: torch.Tensor) -> None:
            net.train()
            opt.zero_grad()
            criterion(net(b), y[: len(b)]).backward()
            opt.step()

        return fn

    def forward(net: nn.Module, ctx, bf16: bool):
        def fn(b: torch.Tensor) -> None:
            net.eval()
            with ctx(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                net(b)

        return fn

    import copy

    plain = copy.deepcopy(model)  # no tlhelpers BatchNorm guard: the anchor's BatchNorm really runs in train mode
    for mod in plain.modules():
        mod._forward_pre_hooks.clear()
    criterion, opt = nn.CrossEntropyLoss(), torch.optim.Adam(plain.fc.parameters(), lr=1e-3)
    cl_weights = copy.deepcopy(model).to(memory_format=torch.channels_last)
    folded = fold_batchnorm(model)
    folded16 = fold_batchnorm(model, torch.bfloat16)  # what tl.embed runs under bf16 autocast
    bf16_ok = tl.device.fast_cpu_autocast()
    im = torch.inference_mode
    eb = a.embed_batch
    configs = [
        ("anchor: train-mode BN, autograd, fp32, batch 32", anchor_step(plain), batches(32)),
        ("eval + no_grad, fp32, batch 32", forward(model, torch.no_grad, False), batches(32)),
        ("eval + inference_mode, fp32, batch 32", forward(model, im, False), batches(32)),
        ("+ channels_last input", forward(model, im, False), batches(32, True)),
        ("+ channels_last weights too", forward(cl_weights, im, False), batches(32, True)),
        ("+ BatchNorm folded into conv, fp32", forward(folded, im, False), batches(32, True)),
    ]
    if bf16_ok:
        configs += [
            ("bf16 autocast alone (contiguous, BN not folded), batch 32", forward(model, im, True), batches(32)),
            ("channels_last + bf16 autocast, batch 32", forward(model, im, True), batches(32, True)),
            ("channels_last + bf16 autocast, batch 16", forward(model, im, True), batches(16, True)),
            ("channels_last + bf16 autocast + BN folded, batch 32", forward(folded, im, True), batches(32, True)),
        ]
        configs += [
            (f"channels_last + bf16 autocast + BN folded, batch {bs}", forward(folded, im, True), batches(bs, True))
            for bs in sorted({16, 64, eb} - {32})
        ]
        configs.append(
            (
                f"channels_last + bf16 autocast + BN folded into bf16 weights (tl.embed), batch {eb}",
                forward(folded16, im, True),
                batches(eb, True),
            )
        )
    int8 = int8_model(model, x[:32])
    if (
        int8 is not None
    ):  # measured for comparison only: torch.ao.quantization is deprecated, the course does not use it
        configs.append(
            (
                "int8 static quantization (torch.ao, deprecated; not used), batch 32",
                forward(int8[0], im, False),
                batches(32, True),
            )
        )
    ladder = ladder_ms(configs, a.reps)
    # Last, because it cannot be undone in this process: glibc keeps freed activation buffers for the next batch
    # (tl.device.reuse_freed_memory, which the course workflow above calls; every row above ran with glibc's default).
    if tl.device.reuse_freed_memory():
        best = folded16 if bf16_ok else folded
        label = (
            "channels_last + bf16 autocast + BN folded into bf16 weights"
            if bf16_ok
            else "channels_last + BN folded, fp32"
        )
        ladder += ladder_ms(
            [(f"{label}, batch {eb}, + freed memory kept for reuse", forward(best, im, bf16_ok), batches(eb, True))],
            a.reps,
        )
    out["forward"] = {
        "n_images": n,
        "bf16_native": bf16_ok,
        "reps": a.reps,
        "ladder": ladder,
        "int8_quantize_seconds": int8[1] if int8 else None,
    }
    del x, plain, cl_weights, folded, folded16, int8

    # 4. Feature caching: one uncached epoch of head training (backbone in the loop, fast path otherwise).
    loader = tl.make_loader(train, batch_size=32, shuffle=True, seed=0)
    t = time.perf_counter()
    tl.fit(model, loader, epochs=1, lr=1e-3, transform=preprocess, progress=False)
    out["caching"] = {
        "uncached_epoch": time.perf_counter() - t,
        "note": "backbone forward every epoch (tl.fit, frozen backbone, same fast path); 10 epochs = 10x",
    }

    # 5. Precision: fp32 vs bf16 (vs int8, for comparison) features, same images, same head training.
    def head_accuracies(ftr: torch.Tensor, fte: torch.Tensor) -> dict:
        res = {}
        for epochs in (1, 10):
            accs = []
            for seed in range(a.seeds):
                h, _ = tl.fit_head(
                    ftr, train.labels, 2, epochs=epochs, lr=1e-3, batch_size=32, seed=seed, progress=False
                )
                with torch.inference_mode():
                    accs.append((h(fte).argmax(1) == test.labels).float().mean().item())
            res[f"accuracy_epochs_{epochs}"] = accs
        return res

    prec, feats = {}, {}
    for name, amp in (("fp32", False), ("bf16", True)):
        t = time.perf_counter()
        ftr, _ = tl.embed(model, train, preprocess, batch_size=a.embed_batch, amp=amp, fold_bn=bool(a.fold_bn))
        fte, _ = tl.embed(model, test, preprocess, batch_size=a.embed_batch, amp=amp, fold_bn=bool(a.fold_bn))
        feats[name] = (ftr, fte)
        prec[name] = {"embed_seconds": time.perf_counter() - t, **head_accuracies(ftr, fte)}
    t = time.perf_counter()
    q = int8_model(model, preprocess(train.images[:32]))
    if q is not None:
        with torch.inference_mode():
            ftr, fte = (
                torch.cat(
                    [
                        q[0](preprocess(d.images[i : i + a.embed_batch]).contiguous(memory_format=torch.channels_last))
                        for i in range(0, len(d), a.embed_batch)
                    ]
                )
                for d in (train, test)
            )
        feats["int8"] = (ftr, fte)
        prec["int8"] = {
            "embed_seconds": time.perf_counter() - t,
            "quantize_seconds": q[1],
            **head_accuracies(ftr, fte),
            "note": "torch.ao static quantization, x86 backend, calibrated on 32 train images; deprecated API",
        }
    for name in feats:
        cos = torch.nn.functional.cosine_similarity(feats["fp32"][0], feats[name][0], dim=1)
        prec[name]["cosine_to_fp32"] = {"mean": cos.mean().item(), "min": cos.min().item()}
    prec["bf16_autocast_active"] = bf16_ok
    out["precision"] = prec
    return out


# ---------------------------------------------------------------- orchestration


def worker_cmd(kind: str, a: argparse.Namespace, **over) -> list[str]:
    o = {
        "course_only": a.course_only,
        "n_train": a.n_train,
        "n_test": a.n_test,
        "embed_batch": a.embed_batch,
        "seeds": a.seeds,
        "fold_bn": a.fold_bn,
        "reps": a.reps,
        "fast_preprocess": a.fast_preprocess,
        "forward_images": a.forward_images,
        "probe_images": a.probe_images,
        **over,
    }
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--n-train",
        str(o["n_train"]),
        "--n-test",
        str(o["n_test"]),
        "--embed-batch",
        str(o["embed_batch"]),
        "--seeds",
        str(o["seeds"]),
        "--fold-bn",
        str(o["fold_bn"]),
        "--fast-preprocess",
        str(o["fast_preprocess"]),
        "--reps",
        str(o["reps"]),
        "--forward-images",
        str(o["forward_images"]),
        "--probe-images",
        str(o["probe_images"]),
    ]
    if a.jpeg_root:
        cmd += ["--jpeg-root", str(a.jpeg_root)]
    for flag in ("native", "fp32", "course_only"):
        if o.get(flag):
            cmd.append(f"--{flag.replace('_', '-')}")
    if o.get("selection"):
        cmd += ["--selection", o["selection"]]
    if o.get("data_root"):
        cmd += ["--data-root", str(o["data_root"])]
    if o.get("sizes"):
        cmd += ["--sizes", *map(str, o["sizes"])]
    return cmd


def child_env(torch_home: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop("TLHELPERS_QUICK", None)
    # Workers measure this checkout's tlhelpers, even where another copy is pip-installed in the environment.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if torch_home is not None:
        env["TORCH_HOME"] = str(torch_home)
    return env


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
    phases = eval(m.group(1), {})  # the anchor prints a dict literal of floats
    phases["setup"] = phases["total"] - phases["filter"] - phases["train_1_epoch"] - phases["eval"]
    return {
        "phases": {k: phases[k] for k in ("filter", "setup", "train_1_epoch", "eval", "total")},
        "test_accuracy": float(m.group(2)),
        **stats,
    }


def run_course(a: argparse.Namespace, env: dict | None = None, **over) -> dict:
    out, stats = run_child(worker_cmd("course", a, **over), env={**child_env(), **(env or {})})
    return {**last_json(out), **stats}


def summarize(r: dict) -> dict:
    """Speedups, targets, noise and floor from the raw measurements (fills the derived keys of ``r``)."""
    an, co = r.get("anchor"), r["course"]
    if an:
        r["speedup"] = {k: an["phases"][k] / co["phases"][k] for k in ("filter", "train_1_epoch", "eval", "total")}
        pa, pc, n = an["test_accuracy"], co["test_accuracy"], r["config"]["n_test"]
        se = float(np.sqrt(pa * (1 - pa) / n + pc * (1 - pc) / n))
        r["accuracy_noise"] = {"se_difference": se, "difference": pc - pa, "within_noise": pc >= pa - 1.96 * se}
    t = {}
    if an:
        t["total_speedup"] = {"value": r["speedup"]["total"], "target": ">= 5", "met": r["speedup"]["total"] >= 5}
        t["accuracy"] = {
            "value": f"{co['test_accuracy']:.3f} vs {an['test_accuracy']:.3f}",
            "target": "equal within noise or better",
            "met": r["accuracy_noise"]["within_noise"],
        }
    ratio = co["train_10_epochs"] / co["phases"]["train_1_epoch"]
    t["ten_epochs_over_one"] = {"value": ratio, "target": "<= 1.2", "met": ratio <= 1.2}
    gb = co["peak_rss_mb"] / 1000
    t["course_peak_rss_gb"] = {"value": gb, "target": "<= 1.0", "met": gb <= 1.0}
    r["targets"] = t
    fw = r.get("techniques", {}).get("forward")
    if fw:
        ladder = {x["config"]: x["ms_per_image"] for x in fw["ladder"] if "int8" not in x["config"]}  # int8: not used
        best = min(ladder.values())
        n_img = r["config"]["n_train"] + r["config"]["n_test"]
        r["floor"] = {
            "ms_per_image": best,
            "best_config": min(ladder, key=ladder.get),
            "n_images": n_img,
            "seconds": best * n_img / 1000,
            "fp32_seconds": ladder["eval + inference_mode, fp32, batch 32"] * n_img / 1000,
            "course_total_over_floor": co["phases"]["total"] / (best * n_img / 1000),
            "course_forward_seconds": co["embed_train"] + co["phases"]["eval"],
        }
    return r


def fmt(v, nd: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def markdown(r: dict) -> str:
    c = r["config"]
    lines = [
        "# Performance: the source's cat-vs-dog workflow vs the course's",
        "",
        f"One run on {r['machine']['cpu']} ({r['machine']['threads']} threads, torch {r['machine']['torch']}), "
        f"{r['timestamp']}. Weights: {r['weights']['name']}"
        + (" — PROVISIONAL random weights: accuracies meaningless." if r["weights"]["provisional"] else "."),
        "",
        f"{c['n_train']} train / {c['n_test']} test images ({c['selection']}), ResNet18 at {c['image_size']} px, "
        f"batch {c['batch_size']}, Adam {c['lr']}, {c['epochs']} epoch of feature extraction.",
        "",
        "| workflow | filter/load s | setup s | train 1 epoch s | eval s | total s | peak RSS MB | test acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("anchor (source text)", r.get("anchor")),
        ("course (tlhelpers)", r["course"]),
        ("course, backbone's own preprocessing", r.get("course_native")),
    ]
    for name, x in rows:
        if x:
            p = x["phases"]
            lines.append(
                f"| {name} | {fmt(p['filter'])} | {fmt(p['setup'])} | {fmt(p['train_1_epoch'])} | {fmt(p['eval'])} | "
                f"{fmt(p['total'])} | {x['peak_rss_mb']:.0f} | {x['test_accuracy']:.3f} |"
            )
    if "speedup" in r:
        s = r["speedup"]
        lines.append(
            f"| **speedup** | {s['filter']:.0f}x | | {s['train_1_epoch']:.1f}x | {s['eval']:.1f}x | "
            f"**{s['total']:.1f}x** | | |"
        )
    lines += ["", "| target | value | goal | met |", "|---|---|---|---|"]
    for k, v in r["targets"].items():
        val = v["value"] if isinstance(v["value"], str) else f"{v['value']:.2f}"
        lines.append(f"| {k} | {val} | {v['target']} | {'yes' if v['met'] else '**no**'} |")
    co = r["course"]
    lines += [
        "",
        f"Course, 10 head epochs on cached features: {co['train_10_epochs']:.2f} s "
        f"(feature extraction {co['embed_train']:.2f} s + 10 head epochs {co['head_10_epochs']:.3f} s), "
        f"test accuracy {co['test_accuracy_10_epochs']:.3f}. Accuracy over {len(co['accuracy_by_seed']['epochs_1'])} "
        f"head seeds: 1 epoch {np.mean(co['accuracy_by_seed']['epochs_1']):.3f} ± "
        f"{np.std(co['accuracy_by_seed']['epochs_1']):.3f}, "
        f"10 epochs {np.mean(co['accuracy_by_seed']['epochs_10']):.3f} ± "
        f"{np.std(co['accuracy_by_seed']['epochs_10']):.3f}.",
    ]
    if "accuracy_noise" in r:
        lines.append(
            f"Binomial standard error of the anchor–course accuracy difference on {c['n_test']} test images: "
            f"{r['accuracy_noise']['se_difference']:.3f}."
        )
    if "floor" in r:
        f = r["floor"]
        lines += [
            "",
            f"**Floor**: one backbone forward over the {f['n_images']} images at the best measured setting "
            f"({f['best_config']}, {f['ms_per_image']:.2f} ms/image) = {f['seconds']:.1f} s (fp32 inference_mode: "
            f"{f['fp32_seconds']:.1f} s). The course workflow's total is {f['course_total_over_floor']:.2f}x the floor "
            f"(its two embed calls take {f['course_forward_seconds']:.1f} s).",
        ]
    tq = r.get("techniques")
    if tq:
        fb, tr = tq["filter_breakdown"], tq["transforms"]
        lines += ["", "## What each technique bought", "", "| technique | before | after |", "|---|---|---|"]
        if "anchor" in r:
            lines.append(
                f"| label filtering without decoding | anchor's filter loop {r['anchor']['phases']['filter']:.1f} s "
                f"(decodes + resizes all 60,000) | labels only {fb['labels_only_select'] * 1000:.0f} ms + decode the "
                f"{fb['n_selected']} chosen JPEGs {fb['decode_selected']:.2f} s |"
            )
        lines.append(
            f"| batched tensor transforms ({tr['n_images']} images to 224 px) | per-image PIL via DataLoader "
            f"{fmt(tr['per_image_pil_dataloader'])} s | torchvision preset on batches "
            f"{tr['batched_torchvision_preset']:.2f} s; tlhelpers BatchPreprocess (normalize at 32 px, resize last) "
            f"{tr['batched_tlhelpers']:.2f} s (max difference {tr['max_abs_difference']:.4f}) |"
        )
        ca = tq["caching"]
        if "anchor" in r:
            lines.append(
                f"| feature caching (10 epochs) | 10 x uncached epoch {ca['uncached_epoch']:.1f} s = "
                f"{10 * ca['uncached_epoch']:.0f} s (estimated) | {co['train_10_epochs']:.1f} s measured |"
            )
        b = tq["precision"]
        lines.append(
            f"| bf16 autocast: features for {c['n_train'] + c['n_test']} images | fp32 "
            f"{b['fp32']['embed_seconds']:.1f} s, "
            f"acc {np.mean(b['fp32']['accuracy_epochs_10']):.3f} (10 ep, mean of seeds) | bf16 "
            f"{b['bf16']['embed_seconds']:.1f} s, "
            f"acc {np.mean(b['bf16']['accuracy_epochs_10']):.3f}; feature cosine to fp32 "
            f"{b['bf16']['cosine_to_fp32']['mean']:.4f} |"
        )
        lad_ms = {x["config"]: x["ms_per_image"] for x in tq["forward"]["ladder"]}

        def ladder_row(word: str, kept: bool = False) -> float | None:
            return next((v for k, v in lad_ms.items() if word in k and ("freed memory kept" in k) == kept), None)

        unfolded = ladder_row("channels_last + bf16 autocast, batch 16")
        folded = ladder_row("BN folded into bf16 weights (tl.embed)")
        kept = ladder_row("", kept=True)
        if unfolded and folded:
            lines.append(
                f"| BatchNorm folded into the convolutions (bf16 weights), batch 16 | {unfolded:.2f} ms/image | "
                f"{folded:.2f} ms/image (ladder below) |"
            )
        no_tune = [x for x in tq.get("course_settings", []) if x.get("reuse_freed_memory") is False]
        if kept and folded:
            after = f"{kept:.2f} ms/image"
            if no_tune and co.get("reuse_freed_memory"):
                after += (
                    f"; course total {co['phases']['total']:.2f} s vs {no_tune[0]['total']:.2f} s without it "
                    "(TLHELPERS_MALLOC_TUNE=0, one run each)"
                )
            lines.append(
                f"| glibc malloc keeps freed activation buffers for the next batch (tl.device.reuse_freed_memory(), "
                f"opt-in) | "
                f"{folded:.2f} ms/image | {after} |"
            )
        if "int8" in b:
            lines.append(
                f"| int8 static quantization (not used: deprecated torch.ao API) | fp32 as above | int8 "
                f"{b['int8']['embed_seconds']:.1f} s incl. {b['int8']['quantize_seconds']:.1f} s to quantize, acc "
                f"{np.mean(b['int8']['accuracy_epochs_10']):.3f}; cosine to fp32 "
                f"{b['int8']['cosine_to_fp32']['mean']:.4f} |"
            )
        fw = tq["forward"]
        lad = fw["ladder"]
        base = next(x["ms_per_image"] for x in lad if x["config"].startswith("eval + inference_mode, fp32"))
        lines += [
            "",
            f"Backbone forward at 224 px, ms per image (best of {fw['reps']} interleaved rounds over "
            f"{fw['n_images']} images; lower is better):",
            "",
            "| configuration | ms/image | vs fp32 inference_mode |",
            "|---|---:|---:|",
        ]
        lines += [f"| {x['config']} | {x['ms_per_image']:.2f} | {base / x['ms_per_image']:.2f}x |" for x in lad]
        if "course_settings" in tq:
            lines += [
                "",
                "Course workflow settings (each its own process; one run each):",
                "",
                "| embed batch | BN folded | preprocessing | freed memory kept | total s | train 1 epoch s | eval s | "
                "peak RSS MB | test acc |",
                "|---:|---|---|---|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {x['embed_batch']} | {x['fold_bn']} | "
                f"{'BatchPreprocess' if x['fast_preprocess'] else 'torchvision preset'} | "
                f"{x.get('reuse_freed_memory', '-')} | "
                f"{x['total']:.2f} | {x['train_1_epoch']:.2f} | {x['eval']:.2f} | {x['peak_rss_mb']:.0f} | "
                f"{x['test_accuracy']:.3f} |"
                for x in tq["course_settings"]
            ]
        if "import_baseline" in tq:
            ib = tq["import_baseline"]
            lines += [
                "",
                f"Memory floor: a process that only imports torch, torchvision and tlhelpers peaks at "
                f"{ib['peak_rss_mb']:.0f} MB ({ib['peak_rss_mb_with_normal_exit']:.0f} MB if Python exits normally: "
                f"the workflows are measured up to their end, without the teardown).",
            ]
        if "ms_per_image_to_pil_resize_normalize" in fb:
            lines += [
                "",
                f"Why the anchor's filter is slow: `dataset[i]` builds a PIL image ({fb['ms_per_image_to_pil']:.3f} "
                f"ms) "
                f"and runs Resize(224)+ToTensor+Normalize ({fb['ms_per_image_to_pil_resize_normalize']:.2f} ms in "
                f"total per "
                f"image), only for the loop to read the label: x 60,000 = {fb['estimated_loop_60000']:.0f} s "
                f"estimated. "
                f"Reading `dataset.targets` for all 50,000 takes {fb['targets_lookup'] * 1000:.1f} ms.",
            ]
        if "same_images" in tq:
            si = tq["same_images"]
            lines += [
                "",
                "Same images: "
                + "; ".join(
                    f"{k}: labels equal {v['labels_equal']}, max pixel diff "
                    f"{v['max_abs_pixel_diff']} (PIL vs torchvision JPEG decode)"
                    for k, v in si.items()
                ),
            ]
    sc = r.get("scaling")
    if sc:
        lines += [
            "",
            "## Scaling (total seconds vs training images, 200 test images)",
            "",
            "| n_train | anchor s | course s | course peak RSS MB |",
            "|---:|---:|---:|---:|",
        ]
        an = {x["n_train"]: x for x in sc.get("anchor", [])}
        for x in sc["course"]:
            lines.append(
                f"| {x['n_train']} | {fmt(an.get(x['n_train'], {}).get('total'), 1)} | {x['total']:.1f} | "
                f"{x['peak_rss_mb']:.0f} |"
            )
        lines += ["", sc["method"], "", "![scaling](perf_scaling.png)"]
    return "\n".join(lines) + "\n"


def plot_scaling(sc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in (
        ("anchor", "source text's workflow (anchor)", "o-"),
        ("course", "course (tlhelpers)", "s-"),
    ):
        rows = sc.get(key) or []
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


def write(r: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
    (out / "perf.md").write_text(markdown(r))


def main(a: argparse.Namespace) -> dict:
    out = Path(a.out)
    o, _ = run_child(worker_cmd("prepare", a), env=child_env())
    prep = last_json(o)
    a.jpeg_root = Path(prep["jpeg_root"])
    r: dict = {
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
            "n_train": a.n_train,
            "n_test": a.n_test,
            "image_size": 224,
            "batch_size": 32,
            "lr": 1e-3,
            "epochs": 1,
            "embed_batch": a.embed_batch,
            "fold_bn": bool(a.fold_bn),
            "fast_preprocess": bool(a.fast_preprocess),
            "selection": "the anchor's first cat/dog indices in batch file order (same images)",
        },
    }
    batches = torch_home = None
    if not a.course_only:
        batches = prepare_batches(a.jpeg_root, Path(prep["bench_cache"]))
        torch_home = Path(prep["torch_home"])
        print("anchor ...", flush=True)
        r["anchor"] = run_anchor(batches, torch_home)
    print("course ...", flush=True)
    r["course"] = run_course(a, selection="anchor")
    r["course_native"] = run_course(a, selection="anchor", native=True)
    write(summarize(r), out)
    if not a.no_ablation:
        print("ablation ...", flush=True)
        o, _ = run_child(worker_cmd("ablate", a, data_root=batches.parent if batches else None), env=child_env())
        r["techniques"] = last_json(o)
        print("course settings ...", flush=True)
        sweep = []
        for over in (
            {"embed_batch": 16},
            {"embed_batch": 32},
            {"embed_batch": 64},
            {"fold_bn": 1 - a.fold_bn},
            {"fast_preprocess": 1 - a.fast_preprocess},
            {"env": {"TLHELPERS_MALLOC_TUNE": "0"}},
        ):
            c = run_course(a, selection="anchor", seeds=1, **over)
            sweep.append(
                {
                    "embed_batch": c["embed_options"]["batch_size"],
                    "fold_bn": c["embed_options"]["fold_bn"],
                    "fast_preprocess": "BatchPreprocess" in c["preprocess"],
                    "reuse_freed_memory": c.get("reuse_freed_memory"),
                    **c["phases"],
                    "peak_rss_mb": c["peak_rss_mb"],
                    "test_accuracy": c["test_accuracy"],
                }
            )
        r["techniques"]["course_settings"] = sweep
        r["techniques"]["import_baseline"] = import_baseline()
        write(summarize(r), out)
    if not a.no_scaling:
        sc = {"sizes": a.sizes}
        if not a.course_only:
            print("scaling: anchor ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="tl-anchor-") as tmp:
                (Path(tmp) / "cifar-10-batches-py").symlink_to(batches)
                o, _ = run_child(
                    worker_cmd("anchor-scaling", a, data_root=tmp, sizes=a.sizes), env=child_env(torch_home)
                )
            sc["anchor"] = last_json(o)["rows"]
        print("scaling: course ...", flush=True)
        sc["course"] = []
        for n in a.sizes:
            c = run_course(a, selection="balanced", n_train=n, seeds=1)
            sc["course"].append(
                {
                    "n_train": c["n_train"],
                    **c["phases"],
                    "peak_rss_mb": c["peak_rss_mb"],
                    "test_accuracy": c["test_accuracy"],
                }
            )
        sc["method"] = (
            "Anchor: a parameterised copy of its logic in this script (the anchor file itself is never "
            "modified); its filter loop enumerates all 60,000 images whatever the size, so it is run once and "
            "its measured time counted at every size; setup, one training epoch over the first n cat/dog "
            "images and eval on 200 are measured per size. Course: tlhelpers' balanced seeded subset "
            "(load_cifar_pair), one subprocess per size, all phases measured."
        )
        r["scaling"] = sc
        plot_scaling(sc, out / "perf_scaling.png")
        write(r, out)
    print(markdown(r))
    return r


def parse(argv: list[str] | None = None) -> argparse.Namespace:
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
    p.add_argument(
        "--fast-preprocess",
        type=int,
        choices=[0, 1],
        default=1,
        help="course: tlhelpers.embed.BatchPreprocess instead of torchvision's preset",
    )
    p.add_argument(
        "--fold-bn",
        type=int,
        choices=[0, 1],
        default=1,
        help="course: fold BatchNorm into the convolutions for embedding (tl.embed's default)",
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
    p.add_argument("--worker", choices=["prepare", "course", "ablate", "anchor-scaling"], help=argparse.SUPPRESS)
    p.add_argument("--selection", choices=["anchor", "balanced"], default="anchor", help=argparse.SUPPRESS)
    p.add_argument("--native", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fp32", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, default=1e-3, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    if args.worker:
        if args.worker != "prepare" and args.jpeg_root is None:
            from tlhelpers.data import cifar_dir

            args.jpeg_root = cifar_dir()
        fn = {
            "prepare": worker_prepare,
            "course": worker_course,
            "ablate": worker_ablate,
            "anchor-scaling": worker_anchor_scaling,
        }[args.worker]
        print(json.dumps(fn(args), default=float), flush=True)
        os._exit(0)  # skip interpreter teardown: with this torch build it alone raises peak RSS by ~100 MB
    else:
        main(args)
