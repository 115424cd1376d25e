"""The evidence behind tl.embed's defaults: BatchNorm folding on or off, at 64 px and 224 px.

    python benchmarks/embed_levers.py          # about 2 min on 2 CPU cores

Embeds the same real CIFAR-10 images (upscaled by the preprocessing) with ``fold_bn=True`` and ``False``,
each timed as the fastest of 3 runs in one process, and checks that both give the same embeddings.
Writes benchmarks/results/embed_levers.json and its table in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

import tlhelpers as tl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "embed_levers.json"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- embed_levers -->", "<!-- /embed_levers -->"


def fastest(fn, *args, repeats: int = 3, **kwargs) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    data = tl.load_cifar_split("test", ("cat", "dog"), n=512)
    model, course_pre = tl.load_backbone("resnet18", weights="course", verbose=False)
    imagenet_pre = tl.models.preprocess_from(
        {"size": 224, "resize_size": 256, "mean": course_pre.mean, "std": course_pre.std}
    )
    rows = []
    for name, pre, n in (("64 px (course backbone)", course_pre, 512), ("224 px (ImageNet size)", imagenet_pre, 128)):
        x = data.images[:n]
        on = tl.embed(model, x, pre, fold_bn=True)[0]
        off = tl.embed(model, x, pre, fold_bn=False)[0]
        t_on = fastest(tl.embed, model, x, pre, fold_bn=True)
        t_off = fastest(tl.embed, model, x, pre, fold_bn=False)
        rel = ((on - off).norm(dim=1) / off.norm(dim=1)).max().item()
        rows.append({"input": name, "images": n, "fold_bn_s": t_on, "no_fold_s": t_off, "max_rel_diff": rel})
        print(rows[-1], flush=True)
    res = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "rows": rows}
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    table = [
        "| input | images | fold_bn=True (s) | fold_bn=False (s) | speed-up | largest relative difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {r['input']} | {r['images']} | {r['fold_bn_s']:.2f} | {r['no_fold_s']:.2f} | "
        f"{r['no_fold_s'] / r['fold_bn_s']:.2f}x | {r['max_rel_diff']:.1e} |"
        for r in rows
    ]
    body = (
        f"{BEGIN}\nMeasured {res['date']} on {res['cpus']} CPU cores, fastest of 3 runs each:\n\n"
        + "\n".join(table)
        + f"\n{END}"
    )
    text = DOC.read_text()
    text = text[: text.index(BEGIN)] + body + text[text.index(END) + len(END) :]
    DOC.write_text(text)
    print("\n".join(table))


if __name__ == "__main__":
    main()
