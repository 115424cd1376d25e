"""Orchestration: runs the workers as subprocesses, summarises, and writes the results after each part.

This process never imports torch: on Linux a child's ru_maxrss starts from its parent's peak RSS (subprocess
uses vfork, and exec keeps the high-water mark of the memory it replaces), so a parent that had imported torch
(~0.7 GB here) would set a floor under every measured child."""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import (
    ANCHOR_DIR,
    DESCRIPTION,
    PHASES,
    ROOT,
    SCHEMA,
    SCRIPT,
    WORKER_KINDS,
    cpu_name,
    has_cpu_flag,
    last_json,
    run_child,
)
from .prepare import prepare_batches
from .report import markdown, plot_scaling, write

# ---------------------------------------------------------------- orchestration


def worker_cmd(kind: str, args: argparse.Namespace, **over) -> list[str]:
    """The command line of a ``kind`` worker: every option of ``args`` as a flag, as overridden by ``over``.

    The hidden options (``help=SUPPRESS``: worker-only settings) are passed only where ``over`` sets them."""
    values = {**vars(args), **over}
    cmd = [sys.executable, str(SCRIPT), "--worker", kind]
    for action in build_parser()._actions:
        value, flag = values.get(action.dest), action.option_strings[0]
        hidden = action.help == argparse.SUPPRESS and action.dest not in over  # --worker too: set above
        if value is None or hidden:
            continue
        if action.nargs == 0:  # store_true
            cmd += [flag] if value else []
        elif action.nargs == "+":
            cmd += [flag, *map(str, value)]
        else:
            cmd += [flag, str(value)]
    return cmd


def child_env(torch_home: Path | None = None) -> dict:
    """The environment of a measured child: this checkout's tlhelpers, no quick mode, and ``$TORCH_HOME``."""
    env = dict(os.environ)
    env.pop("TLHELPERS_QUICK", None)
    # Workers measure this checkout's tlhelpers, even where another copy is pip-installed in the environment.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if torch_home is not None:
        env["TORCH_HOME"] = str(torch_home)
    return env


def run_worker(kind: str, args: argparse.Namespace, env: dict, **over) -> tuple[dict, dict]:
    """Run one worker process: the result it prints (JSON) and its process stats."""
    out, stats = run_child(worker_cmd(kind, args, **over), env=env)
    return last_json(out), stats


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
    # The anchor prints a dict of floats, {'filter': 21.5, ...}: a Python literal, read without running it
    phases = ast.literal_eval(m.group(1))
    phases["setup"] = phases["total"] - phases["filter"] - phases["train_1_epoch"] - phases["eval"]
    return {"phases": {k: phases[k] for k in PHASES}, "test_accuracy": float(m.group(2)), **stats}


def run_course(args: argparse.Namespace, env: dict | None = None, **over) -> dict:
    """The course workflow in its own process: its result and its process stats."""
    result, stats = run_worker("course", args, {**child_env(), **(env or {})}, **over)
    return {**result, **stats}


def measured(course: dict) -> dict:
    """A course run's phases, peak RSS and test accuracy: the measured columns of a table row."""
    return {**course["phases"], "peak_rss_mb": course["peak_rss_mb"], "test_accuracy": course["test_accuracy"]}


def summarize(results: dict) -> dict:
    """Speedups, targets, noise and floor from the raw measurements (fills the derived keys of ``results``)."""
    anchor, course = results.get("anchor"), results["course"]
    if anchor:
        phases = ("filter", "train_1_epoch", "eval", "total")
        results["speedup"] = {k: anchor["phases"][k] / course["phases"][k] for k in phases}
        pa, pc, n = anchor["test_accuracy"], course["test_accuracy"], results["config"]["n_test"]
        se = float(np.sqrt(pa * (1 - pa) / n + pc * (1 - pc) / n))
        results["accuracy_noise"] = {"se_difference": se, "difference": pc - pa, "within_noise": pc >= pa - 1.96 * se}
    results["targets"] = targets(results)
    forward = results.get("techniques", {}).get("forward")
    if forward:
        results["floor"] = forward_floor(forward["ladder"], results["config"], course)
    return results


def targets(results: dict) -> dict:
    """Each target's value, goal and whether it is met."""
    anchor, course = results.get("anchor"), results["course"]
    goals = {}
    if anchor:
        speedup = results["speedup"]["total"]
        goals["total_speedup"] = {"value": speedup, "target": ">= 5", "met": speedup >= 5}
        goals["accuracy"] = {
            "value": f"{course['test_accuracy']:.3f} vs {anchor['test_accuracy']:.3f}",
            "target": "equal within noise or better",
            "met": results["accuracy_noise"]["within_noise"],
        }
    ratio = course["train_10_epochs"] / course["phases"]["train_1_epoch"]
    goals["ten_epochs_over_one"] = {"value": ratio, "target": "<= 1.2", "met": ratio <= 1.2}
    gb = course["peak_rss_mb"] / 1000
    goals["course_peak_rss_gb"] = {"value": gb, "target": "<= 1.0", "met": gb <= 1.0}
    return goals


def forward_floor(ladder: list[dict], config: dict, course: dict) -> dict:
    """The floor: one backbone forward over all the images at the best setting of the ladder, vs the course."""
    ms = {x["config"]: x["ms_per_image"] for x in ladder if "int8" not in x["config"]}  # int8: not used
    best = min(ms.values())
    n_images = config["n_train"] + config["n_test"]
    return {
        "ms_per_image": best,
        "best_config": min(ms, key=ms.get),
        "n_images": n_images,
        "seconds": best * n_images / 1000,
        "fp32_seconds": ms["eval + inference_mode, fp32, batch 32"] * n_images / 1000,
        "course_total_over_floor": course["phases"]["total"] / (best * n_images / 1000),
        "course_forward_seconds": course["embed_train"] + course["phases"]["eval"],
    }


# ---------------------------------------------------------------- the run


def main(args: argparse.Namespace) -> dict:
    """The whole benchmark, each workflow in its own process; the results are written after each part."""
    out = Path(args.out)
    prep, _ = run_worker("prepare", args, child_env())
    args.jpeg_root = Path(prep["jpeg_root"])
    results = new_results(args, prep)
    batches = torch_home = None
    if not args.course_only:
        batches = prepare_batches(args.jpeg_root, Path(prep["bench_cache"]))
        torch_home = Path(prep["torch_home"])
        print("anchor ...", flush=True)
        results["anchor"] = run_anchor(batches, torch_home)
    print("course ...", flush=True)
    results["course"] = run_course(args, selection="anchor")
    results["course_native"] = run_course(args, selection="anchor", native=True)
    write(summarize(results), out)
    if not args.no_ablation:
        results["techniques"] = run_ablation(args, batches)
        write(summarize(results), out)
    if not args.no_scaling:
        results["scaling"] = run_scaling(args, batches, torch_home)
        plot_scaling(results["scaling"], out / "perf_scaling.png")
        write(results, out)
    print(markdown(results))
    return results


def new_results(args: argparse.Namespace, prep: dict) -> dict:
    """The results' header: schema, time, command, machine, weights and configuration."""
    return {
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
            "n_train": args.n_train,
            "n_test": args.n_test,
            "image_size": 224,
            "batch_size": 32,
            "lr": 1e-3,
            "epochs": 1,
            "embed_batch": args.embed_batch,
            "fold_bn": bool(args.fold_bn),
            "fast_preprocess": bool(args.fast_preprocess),
            "selection": "the anchor's first cat/dog indices in batch file order (same images)",
        },
    }


def run_ablation(args: argparse.Namespace, batches: Path | None) -> dict:
    """The techniques: the ablation worker, then the course workflow's settings and the import baseline."""
    print("ablation ...", flush=True)
    techniques, _ = run_worker("ablate", args, child_env(), data_root=batches.parent if batches else None)
    print("course settings ...", flush=True)
    sweep = []
    for over in (
        {"embed_batch": 16},
        {"embed_batch": 32},
        {"embed_batch": 64},
        {"fold_bn": 1 - args.fold_bn},
        {"fast_preprocess": 1 - args.fast_preprocess},
        {"env": {"TLHELPERS_MALLOC_TUNE": "0"}},
    ):
        course = run_course(args, selection="anchor", seeds=1, **over)
        sweep.append(
            {
                "embed_batch": course["embed_options"]["batch_size"],
                "fold_bn": course["embed_options"]["fold_bn"],
                "fast_preprocess": "BatchPreprocess" in course["preprocess"],
                "reuse_freed_memory": course.get("reuse_freed_memory"),
                **measured(course),
            }
        )
    techniques["course_settings"] = sweep
    techniques["import_baseline"] = import_baseline()
    return techniques


SCALING_METHOD = (
    "Anchor: a parameterised copy of its logic in this script (the anchor file itself is never "
    "modified); its filter loop enumerates all 60,000 images whatever the size, so it is run once and "
    "its measured time counted at every size; setup, one training epoch over the first n cat/dog "
    "images and eval on 200 are measured per size. Course: tlhelpers' balanced seeded subset "
    "(load_cifar_pair), one subprocess per size, all phases measured."
)


def run_scaling(args: argparse.Namespace, batches: Path | None, torch_home: Path | None) -> dict:
    """Time vs training-set size: the anchor's logic in one process for all sizes, the course's one per size."""
    scaling = {"sizes": args.sizes}
    if not args.course_only:
        print("scaling: anchor ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="tl-anchor-") as tmp:
            (Path(tmp) / "cifar-10-batches-py").symlink_to(batches)
            anchor, _ = run_worker("anchor-scaling", args, child_env(torch_home), data_root=tmp, sizes=args.sizes)
        scaling["anchor"] = anchor["rows"]
    print("scaling: course ...", flush=True)
    scaling["course"] = []
    for n in args.sizes:
        course = run_course(args, selection="balanced", n_train=n, seeds=1)
        scaling["course"].append({"n_train": course["n_train"], **measured(course)})
    scaling["method"] = SCALING_METHOD
    return scaling


def build_parser() -> argparse.ArgumentParser:
    """The command line; the hidden options (``help=SUPPRESS``) are the workers' own."""
    p = argparse.ArgumentParser(description=DESCRIPTION)
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
    on_off = {"type": int, "choices": [0, 1], "default": 1}  # a setting switched by 0 / 1, on by default
    p.add_argument(
        "--fast-preprocess", **on_off, help="course: tlhelpers.embed.BatchPreprocess instead of torchvision's preset"
    )
    p.add_argument(
        "--fold-bn", **on_off, help="course: fold BatchNorm into the convolutions for embedding (tl.embed's default)"
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
    p.add_argument("--worker", choices=list(WORKER_KINDS), help=argparse.SUPPRESS)
    p.add_argument("--selection", choices=["anchor", "balanced"], default="anchor", help=argparse.SUPPRESS)
    p.add_argument("--native", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fp32", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, default=1e-3, help=argparse.SUPPRESS)
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line."""
    return build_parser().parse_args(argv)
