"""Two recipe levers of the course backbone, measured: label smoothing and zoom augmentation.

Label smoothing is known to make penultimate-layer features less transferable (Kornblith et al., 2021,
"Why do better loss functions lead to less transferable features?"), and zoom augmentation changes what
the features see. Each recipe below is pretrained for the same (shortened) schedule with
``tlhelpers.pretrain.pretrain`` on the 8 non-cat/dog classes, then probed for cat vs dog with 1,000
training images, as ``probe_levers.py`` does (logistic regression, C by 5-fold cross-validation on the
training images only, all 2,000 test images), on the standard 512-d embedding and on layer3 features
pooled on a 2x2 grid. Writes benchmarks/results/pretrain_levers.json and prints a table.

    python benchmarks/pretrain_levers.py [--epochs 8] [--work /tmp/pretrain_levers]

About 20-25 minutes per recipe on a 2-core CPU at 8 epochs; checkpoints already in ``--work`` are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from probe_levers import features, probe  # noqa: E402

import tlhelpers as tl  # noqa: E402
from tlhelpers.pretrain import pretrain  # noqa: E402

RECIPES = {  # name: (label_smoothing, min_scale)
    "shipped recipe (label smoothing 0.1, no zoom)": (0.1, 1.0),
    "no label smoothing": (0.0, 1.0),
    "label smoothing 0.1 + zoom (area 0.5..1)": (0.1, 0.5),
}
PROBED = ("layer4 avg", "layer3 2x2")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--work", type=Path, default=Path("/tmp/pretrain_levers"), help="where the checkpoints go")
    p.add_argument(
        "--recipes",
        type=int,
        nargs="+",
        default=list(range(len(RECIPES))),
        help="which recipes to run, by position in RECIPES (default: all)",
    )
    args = p.parse_args()
    train = tl.load_cifar_split("train", ("cat", "dog"), n=1000, seed=0)
    test = tl.load_cifar_split("test", ("cat", "dog"))
    rows = []
    for i, (name, (ls, ms)) in enumerate(RECIPES.items()):
        if i not in args.recipes:
            continue
        out = args.work / f"ls{ls}_ms{ms}_e{args.epochs}"
        if not (out / "course_resnet18.json").is_file():
            pretrain(out, epochs=args.epochs, label_smoothing=ls, min_scale=ms)
        meta = json.loads((out / "course_resnet18.json").read_text())
        model, _ = tl.load_backbone("resnet18", weights=str(out / "course_resnet18.pt"))
        t0 = time.perf_counter()
        fa, fb = features(model, train.images, 64, False), features(model, test.images, 64, False)
        probes = {k: probe(fa[k], train.labels.numpy(), fb[k], test.labels.numpy())[0] for k in PROBED}
        rows.append(
            {
                "recipe": name,
                "label_smoothing": ls,
                "min_scale": ms,
                "epochs": args.epochs,
                "source_test_accuracy": meta["source_test_accuracy"],
                "train_seconds": meta["train_seconds"],
                "probe": probes,
                "probe_seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    res = ROOT / "benchmarks" / "results" / "pretrain_levers.json"
    res.write_text(
        json.dumps({"train_images": len(train), "test_images": len(test), "size": 64, "rows": rows}, indent=1) + "\n"
    )
    print(
        f"\n| recipe ({args.epochs} epochs) | 8-class test | minutes | cat/dog probe, 512-d embedding "
        "| cat/dog probe, layer3 2x2 grid |\n|---|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['recipe']} | {r['source_test_accuracy']:.1%} | {r['train_seconds'] / 60:.0f} "
            f"| {r['probe']['layer4 avg']:.1%} | {r['probe']['layer3 2x2']:.1%} |"
        )
    print(f"written to {res.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
