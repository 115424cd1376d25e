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
from tlhelpers.strategy import run_strategy

ROOT = Path(__file__).resolve().parents[1]
CONTROL = "feature extraction (random backbone)"  # frozen random features: what pretraining adds
STRATEGIES = ["feature extraction", "partial fine-tuning", "full fine-tuning", "from scratch"]


def paired_margin(a: torch.Tensor, b: torch.Tensor) -> float:
    """95% margin of the accuracy difference of two models scored on the same test images."""
    d = a.float() - b.float()
    return 1.96 * d.std().item() / len(d) ** 0.5


def run(domain: str, sizes: list[int], log) -> list[dict]:
    rows = []
    for n in sizes:
        if domain == "cat vs dog (similar)":
            train, test = tl.load_cifar_pair(("cat", "dog"), n_train=n, n_test=None, seed=0, source="folder")
            augment = tl.random_flip
        else:
            train, test = tl.load_digits_task(n_train=n, seed=0)
            augment = None  # a flipped digit is another shape
        row = {"domain": domain, "train_images": len(train), "test_images": len(test), "epochs": tl.epochs_for(n)}
        correct, val_correct = {}, {}
        for s in [CONTROL, *STRATEGIES]:
            t = time.perf_counter()
            # the method of notebook 06 (tlhelpers/strategy.py): validation split, early stopping
            if s == CONTROL:
                r = run_strategy("feature extraction", train, test, weights="random")
            else:
                r = run_strategy(s, train, test, augment=augment)
            correct[s] = r["test_correct"]
            row[s] = round(correct[s].float().mean().item(), 4)
            row[f"{s} validation"] = round(r["val_acc"], 4)  # what a choice is made on
            row[f"{s} trained"] = r["trained"]  # False: failed to train (tlhelpers.strategy.trained)
            if r["trained"] and s in STRATEGIES:
                val_correct[s] = r["val_correct"]
            row[f"{s} seconds"] = round(time.perf_counter() - t, 1)
            log(f"{domain:22s} n={len(train):6d} {s:38s} acc={row[s]:.4f} ({row[f'{s} seconds']:.0f}s)")
        # the course's choice, on validation among the runs that trained (cheapest of those tied with the best)
        row["chosen on validation"] = tl.stats.choose(val_correct, on="validation").chosen if val_correct else None
        best = max(STRATEGIES, key=lambda s: row[s])
        row["margin vs best"] = {s: round(paired_margin(correct[best], correct[s]), 4) for s in correct}
        rows.append(row)
    return rows


def _against(r: dict, s: str) -> str:
    """How strategy ``s`` compares with the row's best: its gap and the paired 95% margin."""
    best = max(STRATEGIES, key=lambda k: r[k])
    if s == best:
        return f"{s} is the best ({r[s]:.1%})"
    gap, margin = r[best] - r[s], r["margin vs best"][s]
    word = "within noise of" if gap <= margin else "below"
    return f"{s} {r[s]:.1%} is {gap * 100:.1f} points {word} {best} {r[best]:.1%} (margin ±{margin * 100:.1f})"


def verdicts(rows: list[dict]) -> list[str]:
    """Plain statements of where the measurements agree with the source texts' rules of thumb, each with
    the paired 95% margin of the difference it rests on."""
    out = []
    for r in rows:
        best = max(STRATEGIES, key=lambda s: r[s])
        fe_gap, fe_margin = r[best] - r["feature extraction"], r["margin vs best"]["feature extraction"]
        fe_holds = fe_gap <= fe_margin  # feature extraction is the best or within noise of it
        tag = f"{r['domain']}, {r['train_images']:,} images"
        if r["train_images"] < 1000 and r["domain"].startswith("cat"):
            out.append(
                f"- {tag}: rule 'small + similar → feature extraction': {'agrees' if fe_holds else 'disagrees'}: "
                f"{_against(r, 'feature extraction')}."
            )
        elif r["train_images"] > 5000:
            out.append(
                f"- {tag}: rule 'large → fine-tuning beats feature extraction': "
                f"{'disagrees' if fe_holds else 'agrees'}: {_against(r, 'feature extraction')}."
            )
        else:
            out.append(f"- {tag}: {_against(r, best)}; {_against(r, 'feature extraction')}.")
        if r["domain"].startswith("digits"):
            out.append(
                f"  different domain: rule 'different domain → fine-tune more' {'disagrees' if fe_holds else 'agrees'}."
            )
        gain = r["feature extraction"] - r[CONTROL]
        out.append(
            f"  pretrained vs random frozen features: {gain * 100:+.1f} points; "
            f"best pretrained strategy vs from scratch: {(r[best] - r['from scratch']) * 100:+.1f} points."
        )
    return out


NOTES = "<!-- notes: written by hand with figures from the scripts they name; kept by transfer_table.py -->"


def markdown(meta: dict, rows: list[dict], seconds: float) -> str:
    cols = [CONTROL, *STRATEGIES]
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
            "Every run uses the course recipe (`tlhelpers/recipe.py`, below) and the method of notebook 06: a "
            "stratified 20% of the training images is held out for validation, the epoch with the best validation "
            "loss is kept (early stopping with the recipe's patience; the epochs column is the most a run may take), "
            "and the test set is scored once. Feature extraction trains a linear head on cached, standardised "
            "features; the control column does the same on a randomly initialised backbone. Cat/dog fine-tuning "
            "runs see horizontal flips; digits do not (a flipped digit is another shape). The rule-of-thumb "
            "verdicts compare two strategies on the same test images, with the 95% margin of that paired "
            "difference.",
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
