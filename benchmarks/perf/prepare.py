"""Preparation, not timed: the anchor's CIFAR-10 batches rebuilt, the stand-in weights, the same-images check."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from .common import ANCHOR_DIR, CAT_DOG, STANDIN_NAME, anchor_selection, bench_cache, run_child

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
    import torch

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

    import torch

    from tlhelpers.decode import decode_files

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
