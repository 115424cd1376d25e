"""Which features of the course backbone to probe: cat vs dog with 1,000 training images.

For the course backbone and three random-init ResNet18s of the same architecture (seeds 0, 1, 2), pooled
features of layer3 and layer4 at 64 and 128 px input (with and without flip averaging) go into a logistic
regression whose C is chosen by 5-fold cross-validation on the 1,000 training images only; accuracy is
measured once on all 2,000 cat/dog test images. Writes benchmarks/results/probe_levers.json and prints a table.

    python benchmarks/probe_levers.py [checkpoint.pt]
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # LogisticRegressionCV API notices
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import tlhelpers as tl  # noqa: E402
from tlhelpers.device import autocast  # noqa: E402
from tlhelpers.pretrain import normalize  # noqa: E402

SIZES = (64, 128)
RANDOM_SEEDS = (0, 1, 2)


@torch.inference_mode()
def features(model, images: torch.Tensor, size: int, flip: bool) -> dict[str, np.ndarray]:
    """Pooled layer3/layer4 features: global average ('avg') and 2x2 average grid ('2x2')."""
    out: dict[str, list] = {}
    grab = {}
    hooks = [
        model.get_submodule(s).register_forward_hook(lambda m, i, o, s=s: grab.__setitem__(s, o.float()))
        for s in ("layer3", "layer4")
    ]
    model.eval()
    for i in range(0, len(images), 250):
        x = normalize(images[i : i + 250], size)
        views = [x, x.flip(-1)] if flip else [x]
        acc = {}
        for v in views:
            with autocast(torch.device("cpu")):
                model(v.contiguous(memory_format=torch.channels_last))
            for s, o in grab.items():
                for kind, t in (("avg", o.mean((2, 3))), ("2x2", F.adaptive_avg_pool2d(o, 2).flatten(1))):
                    acc[f"{s} {kind}"] = acc.get(f"{s} {kind}", 0) + t / len(views)
        for k, t in acc.items():
            out.setdefault(k, []).append(t)
    for h in hooks:
        h.remove()
    res = {k: torch.cat(v).numpy() for k, v in out.items()}
    res["layer3+layer4 avg"] = np.concatenate([res["layer3 avg"], res["layer4 avg"]], 1)
    return res


def probe(a, ya, b, yb) -> tuple[float, float]:
    clf = make_pipeline(
        StandardScaler(), LogisticRegressionCV(Cs=[0.003, 0.01, 0.03, 0.1, 0.3], cv=5, max_iter=3000, n_jobs=2)
    )
    clf.fit(a, ya)
    return float(clf.score(b, yb)), float(clf[-1].C_[0])


def main() -> None:
    ckpt = sys.argv[1] if len(sys.argv) > 1 else "course"
    course, _ = tl.load_backbone("resnet18", weights=ckpt)
    randoms = []
    for seed in RANDOM_SEEDS:  # random init varies: the baseline is the mean over several
        torch.manual_seed(seed)
        randoms.append(tl.load_backbone("resnet18", weights="random", num_classes=8, verbose=seed == 0)[0])
    train = tl.load_cifar_split("train", ("cat", "dog"), n=1000, seed=0)
    test = tl.load_cifar_split("test", ("cat", "dog"))
    ya, yb = train.labels.numpy(), test.labels.numpy()
    rows = []
    t0 = time.perf_counter()
    for size in SIZES:
        for flip in (False, True):
            fc = (features(course, train.images, size, flip), features(course, test.images, size, flip))
            fr = [(features(m, train.images, size, flip), features(m, test.images, size, flip)) for m in randoms]
            for kind in fc[0]:
                acc_c, c_c = probe(fc[0][kind], ya, fc[1][kind], yb)
                acc_r = [probe(a[kind], ya, b[kind], yb)[0] for a, b in fr]
                r = {
                    "size": size,
                    "flip": flip,
                    "features": kind,
                    "dims": fc[0][kind].shape[1],
                    "course": acc_c,
                    "C_course": c_c,
                    "random_seeds": acc_r,
                    "random": float(np.mean(acc_r)),
                    "gap": acc_c - float(np.mean(acc_r)),
                    "gap_worst_seed": acc_c - max(acc_r),
                }
                rows.append(r)
                print(
                    f"{size:>4} px flip={str(flip):<5} {kind:<18} {r['dims']:>5}d  course {acc_c:.1%}  random "
                    f"{r['random']:.1%} (seeds {', '.join(f'{a:.1%}' for a in acc_r)})  gap {100 * r['gap']:+.1f} "
                    f"(vs the best random seed {100 * r['gap_worst_seed']:+.1f})",
                    flush=True,
                )
    out = ROOT / "benchmarks" / "results" / "probe_levers.json"
    out.write_text(
        json.dumps(
            {
                "checkpoint": ckpt,
                "train_images": len(train),
                "test_images": len(test),
                "random_seeds": list(RANDOM_SEEDS),
                "seconds": round(time.perf_counter() - t0, 1),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    best = max(rows, key=lambda r: r["gap"])
    print(
        f"largest mean gap: {100 * best['gap']:+.1f} points ({best['features']}, {best['size']} px, "
        f"flip={best['flip']}); "
        f"written to {out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
