"""Loading a folder of phone-sized photos: tl.load_image_folder (decode straight to size) vs ImageFolder + Resize.

    python benchmarks/load_photos.py             # 500 JPEGs of 4000x3000 to 224 px (the issue's setting)
    python benchmarks/load_photos.py --n 8 --photo-size 800x600   # a quick look

The photos are generated once (smooth random colour fields with noise, JPEG quality 90, two classes) into
``<cache>/bench-photos-<W>x<H>-<N>``. Each method runs in its own fresh Python process, so its peak RSS is
its own: ``tl.load_image_folder(image_size=224)`` (Pillow's JPEG draft mode, then one resize of the central
square) with 0 and 2 decoding threads, against ``torchvision.datasets.ImageFolder`` with
``Resize(224) + CenterCrop(224)``, iterated once by a ``DataLoader`` (batch 32) with 0 and 2 workers.
Writes benchmarks/results/load_photos.json and the table in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "load_photos.json"
DOC = ROOT / "docs" / "performance.md"
MARK_BEGIN, MARK_END = "<!-- load_photos -->", "<!-- /load_photos -->"

# VmHWM / VmRSS of this process's own memory: getrusage's ru_maxrss would start from the RSS the parent had when
# it forked this process (Linux keeps it across exec), which says nothing about the method measured.
MEM = """
def vm(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))
"""

OURS = (
    MEM
    + """
import resource, sys, time, torch
import tlhelpers as tl
torch.set_num_threads(1)
base = vm("VmRSS")
t = time.perf_counter()
data = tl.load_image_folder(sys.argv[1], image_size=int(sys.argv[2]), num_workers=int(sys.argv[3]))
sec = time.perf_counter() - t
order = sorted(range(len(data)), key=lambda i: data.paths[i])[:8]
torch.save(data.images[order].clone(), sys.argv[4])  # the first 8 by path, as ImageFolder orders them
print(sec, len(data), base, vm("VmHWM"), 0)
"""
)

IMAGEFOLDER = (
    MEM
    + """
import resource, sys, time, torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
torch.set_num_threads(1)
size, workers = int(sys.argv[2]), int(sys.argv[3])
base = vm("VmRSS")
t = time.perf_counter()
ds = datasets.ImageFolder(sys.argv[1], transform=transforms.Compose(
    [transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()]))
batches = [x for x, _ in DataLoader(ds, batch_size=32, num_workers=workers)]
images = torch.cat(batches)
sec = time.perf_counter() - t
assert [p for p, _ in ds.samples] == sorted(p for p, _ in ds.samples)
torch.save(images[:8].clone(), sys.argv[4])
print(sec, len(images), base, vm("VmHWM"),
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
)


def make_photos(folder: Path, n: int, w: int, h: int) -> None:
    """``n`` JPEGs of ``w`` x ``h`` in two class folders (skipped when the folder is already complete)."""
    from PIL import Image

    if folder.is_dir() and len(list(folder.rglob("*.jpg"))) == n:
        return
    print(f"writing {n} photos of {w}x{h} to {folder} (once)")

    def one(i: int) -> None:
        rng = np.random.default_rng(i)
        small = Image.fromarray(rng.integers(0, 256, (h // 100 + 2, w // 100 + 2, 3), dtype=np.uint8))
        img = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"class_{i % 2}" / f"IMG_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, quality=90)

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, range(n)))


def run(script: str, folder: Path, size: int, workers: int, sample: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(size), str(workers), str(sample)],
        capture_output=True,
        text=True,
        check=True,
    )
    sec, count, base_kb, rss_kb, child_kb = out.stdout.split()[-5:]
    return {
        "seconds": float(sec),
        "images": int(count),
        "rss_after_imports_mb": int(base_kb) / 1024,
        "peak_rss_mb": int(rss_kb) / 1024,
        "peak_worker_rss_mb": int(child_kb) / 1024,
    }


def table(res: dict) -> str:
    base = res["runs"]["ImageFolder + Resize, DataLoader 2 workers"]["seconds"]
    lines = [
        "| method | seconds | images/s | vs ImageFolder, 2 workers | peak RSS (MB) | of it, loading (MB) "
        "| peak RSS of a worker, shared pages included (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["runs"].items():
        worker = f"{r['peak_worker_rss_mb']:.0f}" if r["peak_worker_rss_mb"] else "-"
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {r['images'] / r['seconds']:.0f} | {base / r['seconds']:.1f}x "
            f"| {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_after_imports_mb']:.0f} | {worker} |"
        )
    return "\n".join(lines)


def write_doc(res: dict) -> None:
    body = (
        f"{MARK_BEGIN}\n{res['n']} JPEGs of {res['photo_size']} (quality 90, {res['mb_on_disk']:.0f} MB on disk) "
        f"loaded to {res['size']}x{res['size']} on {res['cpus']} CPU cores, {res['date']}; each method in a fresh "
        f"process. Mean absolute pixel difference between the two methods' images: {res['pixel_diff']:.1f} "
        f'(of 255). "Of it, loading": the peak minus the process\'s size after importing torch.\n\n'
        f"{table(res)}\n{MARK_END}"
    )
    text = DOC.read_text() if DOC.exists() else "# Performance\n\nMeasured numbers, each written by the script named.\n"
    if MARK_BEGIN in text:
        text = text[: text.index(MARK_BEGIN)] + body + text[text.index(MARK_END) + len(MARK_END) :]
    else:
        text += (
            "\n## Loading a folder of photos (`benchmarks/load_photos.py`)\n\n"
            "`tl.load_image_folder(image_size=S)` decodes each JPEG in Pillow's draft mode, at the smallest of\n"
            "1/2, 1/4 or 1/8 scale that still covers S, then makes one resize of the central square, so a\n"
            "12-megapixel photo never exists in memory at full size. `ImageFolder` decodes every photo in full\n"
            "and then resizes it.\n\n" + body + "\n"
        )
    DOC.write_text(text)


def main() -> None:
    import torch

    from tlhelpers.settings import cache_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--photo-size", default="4000x3000")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--no-write", action="store_true", help="print the table, write no results files")
    args = ap.parse_args()
    w, h = map(int, args.photo_size.lower().split("x"))
    folder = cache_dir() / f"bench-photos-{w}x{h}-{args.n}"
    make_photos(folder, args.n, w, h)
    sample = folder.parent / f"{folder.name}-sample"
    runs, samples = {}, {}
    for name, script, workers in [
        ("tl.load_image_folder, 1 thread", OURS, 0),
        ("tl.load_image_folder, 2 threads", OURS, 2),
        ("ImageFolder + Resize, DataLoader 0 workers", IMAGEFOLDER, 0),
        ("ImageFolder + Resize, DataLoader 2 workers", IMAGEFOLDER, 2),
    ]:
        path = sample.with_suffix(f".{len(runs)}.pt")
        runs[name] = run(script, folder, args.size, workers, path)
        samples[name] = torch.load(path)
        print(f"{name}: {runs[name]['seconds']:.1f}s, peak RSS {runs[name]['peak_rss_mb']:.0f} MB", flush=True)
    a, b = samples["tl.load_image_folder, 1 thread"], samples["ImageFolder + Resize, DataLoader 2 workers"]
    res = {
        "n": args.n,
        "photo_size": f"{w}x{h}",
        "size": args.size,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "mb_on_disk": sum(p.stat().st_size for p in folder.rglob("*.jpg")) / 1e6,
        "pixel_diff": (a.float() - b.float()).abs().mean().item(),
        "runs": runs,
    }
    print(f"mean absolute pixel difference {res['pixel_diff']:.2f} (of 255) between the two methods' images")
    print(table(res))
    if not args.no_write:
        RESULTS.write_text(json.dumps(res, indent=2) + "\n")
        write_doc(res)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
