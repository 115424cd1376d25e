"""The report: perf.md (tables of every part) and the scaling plot, from the results dict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import PHASES

# ---------------------------------------------------------------- report


def fmt(v, nd: int = 2) -> str:
    """``v`` with ``nd`` decimals; a dash for None or NaN."""
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def markdown(results: dict) -> str:
    """perf.md: the side-by-side table and the targets, then the techniques and the scaling where measured."""
    lines = md_overview(results) + md_targets(results["targets"]) + md_course_accuracy(results)
    if "floor" in results:
        lines += md_floor(results["floor"])
    if results.get("techniques"):
        lines += md_techniques(results)
    if results.get("scaling"):
        lines += md_scaling(results["scaling"])
    return "\n".join(lines) + "\n"


def md_overview(results: dict) -> list[str]:
    """The title, the machine and settings, and the side-by-side table of the workflows."""
    machine, config = results["machine"], results["config"]
    provisional = " — PROVISIONAL random weights: accuracies meaningless." if results["weights"]["provisional"] else "."
    lines = [
        "# Performance: the source's cat-vs-dog workflow vs the course's",
        "",
        f"One run on {machine['cpu']} ({machine['threads']} threads, torch {machine['torch']}), "
        f"{results['timestamp']}. Weights: {results['weights']['name']}{provisional}",
        "",
        f"{config['n_train']} train / {config['n_test']} test images ({config['selection']}), ResNet18 at "
        f"{config['image_size']} px, batch {config['batch_size']}, Adam {config['lr']}, {config['epochs']} epoch of "
        "feature extraction.",
        "",
        "| workflow | filter/load s | setup s | train 1 epoch s | eval s | total s | peak RSS MB | test acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    workflows = [
        ("anchor (source text)", results.get("anchor")),
        ("course (tlhelpers)", results["course"]),
        ("course, backbone's own preprocessing", results.get("course_native")),
    ]
    for name, workflow in workflows:
        if workflow:
            seconds = " | ".join(fmt(workflow["phases"][k]) for k in PHASES)
            lines.append(f"| {name} | {seconds} | {workflow['peak_rss_mb']:.0f} | {workflow['test_accuracy']:.3f} |")
    if "speedup" in results:
        speedup = results["speedup"]
        lines.append(
            f"| **speedup** | {speedup['filter']:.0f}x | | {speedup['train_1_epoch']:.1f}x | {speedup['eval']:.1f}x | "
            f"**{speedup['total']:.1f}x** | | |"
        )
    return lines


def md_targets(targets: dict) -> list[str]:
    """The table of targets."""
    lines = ["", "| target | value | goal | met |", "|---|---|---|---|"]
    for name, target in targets.items():
        value = target["value"] if isinstance(target["value"], str) else f"{target['value']:.2f}"
        lines.append(f"| {name} | {value} | {target['target']} | {'yes' if target['met'] else '**no**'} |")
    return lines


def md_course_accuracy(results: dict) -> list[str]:
    """The course's 10 head epochs, its accuracy over head seeds, and the noise of the accuracy difference."""
    course = results["course"]
    one, ten = course["accuracy_by_seed"]["epochs_1"], course["accuracy_by_seed"]["epochs_10"]
    lines = [
        "",
        f"Course, 10 head epochs on cached features: {course['train_10_epochs']:.2f} s "
        f"(feature extraction {course['embed_train']:.2f} s + 10 head epochs {course['head_10_epochs']:.3f} s), "
        f"test accuracy {course['test_accuracy_10_epochs']:.3f}. Accuracy over {len(one)} head seeds: "
        f"1 epoch {np.mean(one):.3f} ± {np.std(one):.3f}, 10 epochs {np.mean(ten):.3f} ± {np.std(ten):.3f}.",
    ]
    if "accuracy_noise" in results:
        lines.append(
            "Binomial standard error of the anchor–course accuracy difference on "
            f"{results['config']['n_test']} test images: {results['accuracy_noise']['se_difference']:.3f}."
        )
    return lines


def md_floor(floor: dict) -> list[str]:
    """The floor: one backbone forward over all the images, vs the course's total."""
    return [
        "",
        f"**Floor**: one backbone forward over the {floor['n_images']} images at the best measured setting "
        f"({floor['best_config']}, {floor['ms_per_image']:.2f} ms/image) = {floor['seconds']:.1f} s (fp32 "
        f"inference_mode: {floor['fp32_seconds']:.1f} s). The course workflow's total is "
        f"{floor['course_total_over_floor']:.2f}x the floor (its two embed calls take "
        f"{floor['course_forward_seconds']:.1f} s).",
    ]


def md_techniques(results: dict) -> list[str]:
    """The section on what each technique bought: its table, the forward ladder and the details."""
    techniques, breakdown = results["techniques"], results["techniques"]["filter_breakdown"]
    lines = md_technique_table(results) + md_forward_ladder(techniques["forward"])
    if "course_settings" in techniques:
        lines += md_course_settings(techniques["course_settings"])
    if "import_baseline" in techniques:
        lines += md_import_baseline(techniques["import_baseline"])
    if "ms_per_image_to_pil_resize_normalize" in breakdown:
        lines += md_filter_cost(breakdown)
    if "same_images" in techniques:
        lines += md_same_images(techniques["same_images"])
    return lines


def md_technique_table(results: dict) -> list[str]:
    """The table of techniques, each with the time before and after it."""
    techniques, course, config = results["techniques"], results["course"], results["config"]
    breakdown, transforms = techniques["filter_breakdown"], techniques["transforms"]
    caching, precision = techniques["caching"], techniques["precision"]
    lines = ["", "## What each technique bought", "", "| technique | before | after |", "|---|---|---|"]
    if "anchor" in results:
        lines.append(
            "| label filtering without decoding | anchor's filter loop "
            f"{results['anchor']['phases']['filter']:.1f} s (decodes + resizes all 60,000) | labels only "
            f"{breakdown['labels_only_select'] * 1000:.0f} ms + decode the {breakdown['n_selected']} chosen JPEGs "
            f"{breakdown['decode_selected']:.2f} s |"
        )
    lines.append(
        f"| batched tensor transforms ({transforms['n_images']} images to 224 px) | per-image PIL via DataLoader "
        f"{fmt(transforms['per_image_pil_dataloader'])} s | torchvision preset on batches "
        f"{transforms['batched_torchvision_preset']:.2f} s; tlhelpers BatchPreprocess (normalize at 32 px, resize "
        f"last) {transforms['batched_tlhelpers']:.2f} s (max difference {transforms['max_abs_difference']:.4f}) |"
    )
    if "anchor" in results:
        lines.append(
            f"| feature caching (10 epochs) | 10 x uncached epoch {caching['uncached_epoch']:.1f} s = "
            f"{10 * caching['uncached_epoch']:.0f} s (estimated) | {course['train_10_epochs']:.1f} s measured |"
        )
    fp32, bf16 = precision["fp32"], precision["bf16"]
    lines.append(
        f"| bf16 autocast: features for {config['n_train'] + config['n_test']} images | fp32 "
        f"{fp32['embed_seconds']:.1f} s, acc {np.mean(fp32['accuracy_epochs_10']):.3f} (10 ep, mean of seeds) | "
        f"bf16 {bf16['embed_seconds']:.1f} s, acc {np.mean(bf16['accuracy_epochs_10']):.3f}; feature cosine to "
        f"fp32 {bf16['cosine_to_fp32']['mean']:.4f} |"
    )
    lines += md_ladder_technique_rows(techniques, course)
    if "int8" in precision:
        int8 = precision["int8"]
        lines.append(
            f"| int8 static quantization (not used: deprecated torch.ao API) | fp32 as above | int8 "
            f"{int8['embed_seconds']:.1f} s incl. {int8['quantize_seconds']:.1f} s to quantize, acc "
            f"{np.mean(int8['accuracy_epochs_10']):.3f}; cosine to fp32 {int8['cosine_to_fp32']['mean']:.4f} |"
        )
    return lines


def md_ladder_technique_rows(techniques: dict, course: dict) -> list[str]:
    """The technique rows read off the forward ladder: BatchNorm folding, and glibc keeping freed memory."""
    ms = {x["config"]: x["ms_per_image"] for x in techniques["forward"]["ladder"]}

    def ms_for(words: str, kept: bool = False) -> float | None:
        return next((v for k, v in ms.items() if words in k and ("freed memory kept" in k) == kept), None)

    unfolded = ms_for("channels_last + bf16 autocast, batch 16")
    folded = ms_for("BN folded into bf16 weights (tl.embed)")
    kept = ms_for("", kept=True)
    lines = []
    if unfolded and folded:
        lines.append(
            f"| BatchNorm folded into the convolutions (bf16 weights), batch 16 | {unfolded:.2f} ms/image | "
            f"{folded:.2f} ms/image (ladder below) |"
        )
    no_tune = [x for x in techniques.get("course_settings", []) if x.get("reuse_freed_memory") is False]
    if kept and folded:
        after = f"{kept:.2f} ms/image"
        if no_tune and course.get("reuse_freed_memory"):
            after += (
                f"; course total {course['phases']['total']:.2f} s vs {no_tune[0]['total']:.2f} s without it "
                "(TLHELPERS_MALLOC_TUNE=0, one run each)"
            )
        lines.append(
            "| glibc malloc keeps freed activation buffers for the next batch (tl.device.reuse_freed_memory(), "
            f"opt-in) | {folded:.2f} ms/image | {after} |"
        )
    return lines


def md_forward_ladder(forward: dict) -> list[str]:
    """The forward ladder: ms per image of each configuration, and its speed relative to fp32 inference_mode."""
    ladder = forward["ladder"]
    base = next(x["ms_per_image"] for x in ladder if x["config"].startswith("eval + inference_mode, fp32"))
    lines = [
        "",
        f"Backbone forward at 224 px, ms per image (best of {forward['reps']} interleaved rounds over "
        f"{forward['n_images']} images; lower is better):",
        "",
        "| configuration | ms/image | vs fp32 inference_mode |",
        "|---|---:|---:|",
    ]
    return lines + [f"| {x['config']} | {x['ms_per_image']:.2f} | {base / x['ms_per_image']:.2f}x |" for x in ladder]


def md_course_settings(settings: list[dict]) -> list[str]:
    """The table of course workflow settings, one process each."""
    lines = [
        "",
        "Course workflow settings (each its own process; one run each):",
        "",
        "| embed batch | BN folded | preprocessing | freed memory kept | total s | train 1 epoch s | eval s | "
        "peak RSS MB | test acc |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for x in settings:
        preprocessing = "BatchPreprocess" if x["fast_preprocess"] else "torchvision preset"
        lines.append(
            f"| {x['embed_batch']} | {x['fold_bn']} | {preprocessing} | {x.get('reuse_freed_memory', '-')} | "
            f"{x['total']:.2f} | {x['train_1_epoch']:.2f} | {x['eval']:.2f} | {x['peak_rss_mb']:.0f} | "
            f"{x['test_accuracy']:.3f} |"
        )
    return lines


def md_import_baseline(baseline: dict) -> list[str]:
    """The memory floor: the peak RSS of a process that only imports."""
    return [
        "",
        "Memory floor: a process that only imports torch, torchvision and tlhelpers peaks at "
        f"{baseline['peak_rss_mb']:.0f} MB ({baseline['peak_rss_mb_with_normal_exit']:.0f} MB if Python exits "
        "normally: the workflows are measured up to their end, without the teardown).",
    ]


def md_filter_cost(breakdown: dict) -> list[str]:
    """Why the anchor's filter loop is slow, per image."""
    return [
        "",
        "Why the anchor's filter is slow: `dataset[i]` builds a PIL image "
        f"({breakdown['ms_per_image_to_pil']:.3f} ms) and runs Resize(224)+ToTensor+Normalize "
        f"({breakdown['ms_per_image_to_pil_resize_normalize']:.2f} ms in total per image), only for the loop to "
        f"read the label: x 60,000 = {breakdown['estimated_loop_60000']:.0f} s estimated. Reading "
        f"`dataset.targets` for all 50,000 takes {breakdown['targets_lookup'] * 1000:.1f} ms.",
    ]


def md_same_images(same_images: dict) -> list[str]:
    """Whether the course's selection is the anchor's images."""
    splits = "; ".join(
        f"{split}: labels equal {v['labels_equal']}, max pixel diff {v['max_abs_pixel_diff']} "
        "(PIL vs torchvision JPEG decode)"
        for split, v in same_images.items()
    )
    return ["", "Same images: " + splits]


def md_scaling(scaling: dict) -> list[str]:
    """The scaling section: total seconds vs training images, both workflows."""
    anchor_rows = {x["n_train"]: x for x in scaling.get("anchor", [])}
    lines = [
        "",
        "## Scaling (total seconds vs training images, 200 test images)",
        "",
        "| n_train | anchor s | course s | course peak RSS MB |",
        "|---:|---:|---:|---:|",
    ]
    for x in scaling["course"]:
        anchor_total = fmt(anchor_rows.get(x["n_train"], {}).get("total"), 1)
        lines.append(f"| {x['n_train']} | {anchor_total} | {x['total']:.1f} | {x['peak_rss_mb']:.0f} |")
    return lines + ["", scaling["method"], "", "![scaling](perf_scaling.png)"]


def plot_scaling(scaling: dict, path: Path) -> None:
    """perf_scaling.png: total seconds vs training images, log-log, both workflows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in (
        ("anchor", "source text's workflow (anchor)", "o-"),
        ("course", "course (tlhelpers)", "s-"),
    ):
        rows = scaling.get(key) or []
        if rows:
            ax.plot([x["n_train"] for x in rows], [x["total"] for x in rows], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training images (cat + dog)")
    ax.set_ylabel("total seconds, 1 epoch + eval on 200")
    ax.set_title("Feature extraction time vs training-set size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(results: dict, out: Path) -> None:
    """perf.json and perf.md into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "perf.md").write_text(markdown(results))
