"""How well does the course backbone transfer? The measured table of issue 3.

    python benchmarks/transfer_table.py            # full table (about 15 min on 2 CPU cores)
    python benchmarks/transfer_table.py --sizes 100 --digits-sizes 100   # a quick look

On the real CIFAR-10 cat/dog test images (all 2,000) and on a different domain (scikit-learn's
handwritten digits as RGB, 500 test images), for several training-set sizes:
feature extraction (frozen backbone, linear head on cached features), partial fine-tuning
(layer4 + head, per-group learning rates), full fine-tuning (all weights, low LR) and training from
scratch (random init, all weights), plus feature extraction on a *random* backbone as the control.
Writes benchmarks/results/transfer.json and docs/course_backbone.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import tlhelpers as tl
from tlhelpers.recipe import recipe_table

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["feature extraction", "partial fine-tuning", "full fine-tuning", "scratch"]


epochs_for = tl.epochs_for  # the course recipe (tlhelpers/recipe.py): fixed epochs here, no early stopping


def feature_extraction(weights: str, train, test, seed: int = 0) -> float:
    tl.set_seed(seed)
    model, pre = tl.load_backbone("resnet18", weights=weights, num_classes=len(train.classes), verbose=False)
    tl.freeze(model)
    ftr, ytr = tl.embed(model, train, pre)
    fte, yte = tl.embed(model, test, pre)
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6  # standardise with training statistics only
    r = tl.recipe("feature extraction")
    _, hist = tl.fit_head(
        (ftr - mu) / sd,
        ytr,
        len(train.classes),
        (fte - mu) / sd,
        yte,
        epochs=r.head_epochs,
        lr=r.head_lr,
        weight_decay=r.weight_decay,
        batch_size=64,
        seed=seed,
        progress=False,
    )
    return hist[-1]["val_acc"]


def fine_tune(strategy: str, train, test, seed: int = 0) -> float:
    tl.set_seed(seed)
    weights = "random" if strategy == "scratch" else "course"
    model, pre = tl.load_backbone("resnet18", weights=weights, num_classes=len(train.classes), verbose=False)
    opt = tl.recipe("from scratch" if strategy == "scratch" else strategy).apply(model)  # stages and rates
    epochs = epochs_for(len(train))
    tl.fit(
        model,
        tl.make_loader(train, 64, shuffle=True, seed=seed),
        epochs=epochs,
        optimizer=opt,
        transform=pre,
        augment=tl.random_flip,
        progress=False,
    )
    return tl.evaluate(model, tl.make_loader(test, 500), transform=pre)["acc"]  # once, after training


def run(domain: str, sizes: list[int], log) -> list[dict]:
    rows = []
    for n in sizes:
        if domain == "cat vs dog (similar)":
            train, test = tl.load_cifar_pair(("cat", "dog"), n_train=n, n_test=None, seed=0, source="folder")
        else:
            train, test = tl.load_digits_task(n_train=n, seed=0)
        row = {"domain": domain, "train_images": len(train), "test_images": len(test), "epochs": epochs_for(len(train))}
        for s in ["feature extraction (random backbone)"] + STRATEGIES:
            t = time.perf_counter()
            if s == "feature extraction":
                acc = feature_extraction("course", train, test)
            elif s.startswith("feature extraction (random"):
                acc = feature_extraction("random", train, test)
            else:
                acc = fine_tune(s, train, test)
            row[s] = round(acc, 4)
            row[f"{s} seconds"] = round(time.perf_counter() - t, 1)
            log(f"{domain:22s} n={len(train):6d} {s:38s} acc={acc:.4f} ({row[f'{s} seconds']:.0f}s)")
        rows.append(row)
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """Plain statements of where the measurements agree with the source texts' rules of thumb."""
    out = []
    for r in rows:
        best = max(STRATEGIES, key=lambda s: r[s])
        tag = f"{r['domain']}, {r['train_images']:,} images"
        fe, full, part = r["feature extraction"], r["full fine-tuning"], r["partial fine-tuning"]
        if r["train_images"] < 1000 and r["domain"].startswith("cat"):
            ok = fe >= max(full, part) - 0.01
            out.append(
                f"- {tag}: rule 'small + similar → feature extraction': "
                f"{'agrees' if ok else 'disagrees'} (FE {fe:.1%}, partial {part:.1%}, full {full:.1%}; best: {best})."
            )
        elif r["train_images"] > 5000:
            ok = full >= fe
            out.append(
                f"- {tag}: rule 'large → fine-tuning beats feature extraction': "
                f"{'agrees' if ok else 'disagrees'} (full {full:.1%} vs FE {fe:.1%}; best: {best})."
            )
        else:
            out.append(
                f"- {tag}: best is {best} ({r[best]:.1%}); FE {fe:.1%}, partial {part:.1%}, full {full:.1%}, "
                f"scratch {r['scratch']:.1%}."
            )
        if r["domain"].startswith("digits"):
            ok = max(part, full) > fe
            out.append(
                f"  different domain: rule 'different domain → fine-tune more' {'agrees' if ok else 'disagrees'}."
            )
        gain = r["feature extraction"] - r["feature extraction (random backbone)"]
        out.append(
            f"  pretrained vs random frozen features: {gain * 100:+.1f} points; "
            f"best pretrained strategy vs scratch: {(r[best] - r['scratch']) * 100:+.1f} points."
        )
    return out


NOTES = "<!-- notes: written by hand with figures from the scripts they name; kept by transfer_table.py -->"


def markdown(meta: dict, rows: list[dict], seconds: float) -> str:
    cols = ["feature extraction (random backbone)"] + STRATEGIES
    head = "| domain | train images | epochs | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (3 + len(cols))]
    for r in rows:
        cells = " | ".join(f"{r[c]:.1%} ({r[c + ' seconds']:.0f}s)" for c in cols)
        lines.append(f"| {r['domain']} | {r['train_images']:,} | {r['epochs']} | {cells} |")
    return "\n".join(
        [
            "# The course backbone, measured",
            "",
            "The tables and the rule-of-thumb list are generated by `python benchmarks/transfer_table.py`; the notes "
            "after them are kept when it runs again. "
            f"Machine: {torch.get_num_threads()} CPU threads, torch {torch.__version__}; whole run {seconds / 60:.1f} "
            f"min.",
            "",
            "## The backbone",
            f"- torchvision `resnet18`, trained from scratch by `tlhelpers.pretrain.pretrain` on "
            f"{meta['source_images']:,} "
            f"CIFAR-10 training images of {', '.join(meta['source_classes'])} (no cats, no dogs), "
            f"{meta['recipe']['epochs']} epochs at {meta['preprocessing']['size']} px, "
            f"{meta['train_seconds'] / 60:.0f} min.",
            f"- Source-task test accuracy (8 classes, {meta['source_test_images']:,} test images, fp16 weights as "
            f"shipped): "
            f"**{meta['source_test_accuracy']:.1%}**.",
            "",
            "## Transfer (test accuracy; seconds in brackets)",
            "Cat vs dog is tested on all 2,000 CIFAR-10 test images of the two classes; digits on 500 held-out images. "
            "Feature extraction trains a linear head on cached, standardised features. Every run uses the course "
            "recipe "
            "(`tlhelpers/recipe.py`), here for a fixed number of epochs and batch 64, evaluated once on the test set "
            "after training (no validation split, no early stopping):",
            "",
            recipe_table(),
            "",
            *lines,
            "",
            "## Against the rules of thumb",
            *verdicts(rows),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--digits-sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer.json"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "course_backbone.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    meta = tl.course_backbone_info()
    rows = run("cat vs dog (similar)", args.sizes, print) + run("digits (different)", args.digits_sizes, print)
    seconds = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "backbone": {k: meta[k] for k in ("source_test_accuracy", "sha256")},
                "rows": rows,
                "seconds": round(seconds, 1),
            },
            indent=2,
        )
        + "\n"
    )
    doc = Path(args.doc)
    old = doc.read_text() if doc.is_file() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else NOTES + "\n"  # hand-written notes survive a re-run
    doc.write_text(markdown(meta, rows, seconds) + "\n" + notes)
    print(f"wrote {args.out} and {args.doc} in {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
