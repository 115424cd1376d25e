"""What each technique buys: filtering, transforms, the forward-pass ladder, caching, precision (a worker)."""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .common import CAT_DOG, anchor_preprocess
from .prepare import check_same_images
from .workers import _anchor_objects, accuracy_by_seed, anchor_images, frozen_backbone

if TYPE_CHECKING:
    from tlhelpers.data import ImageTensors


def worker_ablate(args: argparse.Namespace) -> dict:
    """What each technique buys, measured on the anchor's images with the same weights."""
    train, test, breakdown, anchor_train = ablate_filtering(args)
    transforms, same_images, preprocess = ablate_transforms(args, train, anchor_train)
    out: dict[str, dict] = {} if same_images is None else {"same_images": same_images}
    out["filter_breakdown"] = breakdown
    out["transforms"] = transforms
    model, _ = frozen_backbone()
    out["forward"] = ablate_forward(args, model, train, preprocess)
    out["caching"] = ablate_caching(model, train, preprocess)
    out["precision"] = ablate_precision(args, model, (train, test), preprocess, out["forward"]["bf16_native"])
    return out


def ablate_filtering(args: argparse.Namespace) -> tuple:
    """1. Filtering: the anchor's loop decodes and transforms every image to read its label."""
    start = time.perf_counter()
    train, test, select_seconds = anchor_images(args)
    breakdown = {
        "labels_only_select": select_seconds,
        "decode_selected": time.perf_counter() - start - select_seconds,
        "n_selected": len(train) + len(test),
    }
    if not args.data_root:
        return train, test, breakdown, None
    t = time.perf_counter()
    anchor_train, _, transform = _anchor_objects(args.data_root)
    breakdown["load_pickled_batches"] = time.perf_counter() - t
    breakdown.update(anchor_loop_cost(anchor_train, transform, args.probe_images))
    return train, test, breakdown, anchor_train


def anchor_loop_cost(dataset, transform, n_images: int) -> dict:
    """What reading labels costs: ``dataset.targets`` for all, or ``dataset[i]`` (as the anchor's loop) per image."""
    t = time.perf_counter()
    np.flatnonzero(np.isin(np.asarray(dataset.targets), CAT_DOG))
    cost = {"targets_lookup": time.perf_counter() - t}
    dataset.transform = None
    cost["ms_per_image_to_pil"] = ms_per_item(dataset, n_images)
    dataset.transform = transform
    cost["ms_per_image_to_pil_resize_normalize"] = ms_per_item(dataset, n_images)
    cost["estimated_loop_60000"] = cost["ms_per_image_to_pil_resize_normalize"] * 60000 / 1000
    cost["probe_images"] = n_images
    return cost


def ms_per_item(dataset, n_items: int) -> float:
    """Milliseconds per ``dataset[i]`` over the first ``n_items`` items."""
    t = time.perf_counter()
    for i in range(n_items):
        dataset[i]
    return (time.perf_counter() - t) * 1000 / n_items


def batched_seconds(transform, images: ImageTensors) -> float:
    """Seconds to run ``transform`` over ``images`` in batches of 32."""
    t = time.perf_counter()
    for i in range(0, len(images), 32):
        transform(images.images[i : i + 32])
    return time.perf_counter() - t


def ablate_transforms(args: argparse.Namespace, train: ImageTensors, anchor_train) -> tuple:
    """2. Transforms: per-image PIL path through Dataset + DataLoader vs one batched tensor transform."""
    from torch.utils.data import DataLoader, Subset

    from tlhelpers.embed import fast_preprocess

    preset = anchor_preprocess()
    per_image = float("nan")
    if anchor_train is not None:
        idx = [i for i, y in enumerate(anchor_train.targets) if y in CAT_DOG][: args.n_train]
        t = time.perf_counter()
        for _ in DataLoader(Subset(anchor_train, idx), batch_size=32):
            pass
        per_image = time.perf_counter() - t
    fast = fast_preprocess(preset)
    batched_seconds(fast, train)  # warm-up
    same_images = None
    if args.data_root:
        batches = Path(args.data_root) / "cifar-10-batches-py"
        same_images = check_same_images(batches, args.jpeg_root, args.n_train, args.n_test)
    transforms = {
        "n_images": len(train),
        "per_image_pil_dataloader": per_image,
        "batched_torchvision_preset": batched_seconds(preset, train),
        "batched_tlhelpers": batched_seconds(fast, train),
        "max_abs_difference": (preset(train.images[:64]) - fast(train.images[:64])).abs().max().item(),
    }
    return transforms, same_images, (fast if args.fast_preprocess else preset)


def ladder_ms(configs: list[tuple[str, object, list[torch.Tensor]]], reps: int) -> list[dict]:
    """ms per image for each (label, fn, batches): one warm-up, then ``reps`` interleaved rounds, best round kept
    (the minimum is the least disturbed by other work on a shared machine; all rounds are recorded)."""
    times: dict[str, list[float]] = {c[0]: [] for c in configs}
    for _, fn, batches in configs:
        fn(batches[0])
    for _ in range(reps):
        for label, fn, batches in configs:
            t = time.perf_counter()
            for b in batches:
                fn(b)
            times[label].append((time.perf_counter() - t) * 1000 / sum(len(b) for b in batches))
    return [{"config": k, "ms_per_image": min(v), "rounds": v} for k, v in times.items()]


def int8_model(model: torch.nn.Module, calib: torch.Tensor) -> tuple[torch.nn.Module, float] | None:
    """An int8 copy of ``model``'s body (everything before ``fc``, output N x 512 float) by FX static quantization
    calibrated on the preprocessed batch ``calib``, and the seconds it took; None if this PyTorch lacks the
    deprecated ``torch.ao.quantization`` API. Measured for comparison only: the course does not use it."""
    import warnings

    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            torch.backends.quantized.engine = "x86"
            layers = list(copy.deepcopy(model).eval().children())[:-1]
            body = torch.nn.Sequential(*layers, torch.nn.Flatten(1))
            q = prepare_fx(body, get_default_qconfig_mapping("x86"), example_inputs=(calib[:1],))
            with torch.inference_mode():
                q(calib)
            q = convert_fx(q)
    except Exception:
        return None
    return q, time.perf_counter() - t


def split_batches(x: torch.Tensor, n: int, size: int, channels_last: bool = False) -> list[torch.Tensor]:
    """The first ``n`` rows of ``x`` in contiguous batches of ``size``, channels_last or not."""
    if channels_last:
        return [x[i : i + size].contiguous(memory_format=torch.channels_last) for i in range(0, n, size)]
    return [x[i : i + size].contiguous() for i in range(0, n, size)]


def anchor_step(net: torch.nn.Module, labels: torch.Tensor):
    """What the anchor does per batch while training (BatchNorm in train mode), as a function of the batch."""
    criterion, opt = torch.nn.CrossEntropyLoss(), torch.optim.Adam(net.fc.parameters(), lr=1e-3)

    def fn(b: torch.Tensor) -> None:
        net.train()
        opt.zero_grad()
        criterion(net(b), labels[: len(b)]).backward()
        opt.step()

    return fn


def forward_pass(net: torch.nn.Module, ctx, bf16: bool):
    """An inference forward in eval mode under ``ctx``, with or without bf16 autocast."""

    def fn(b: torch.Tensor) -> None:
        net.eval()
        with ctx(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(b)

    return fn


def ladder_nets(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The variants of ``model`` the forward ladder compares (``model`` itself is left as it is)."""
    from tlhelpers.embed import fold_batchnorm

    plain = copy.deepcopy(model)  # no tlhelpers BatchNorm guard: the anchor's BatchNorm really runs in train mode
    for mod in plain.modules():
        mod._forward_pre_hooks.clear()
    return {
        "plain": plain,
        "channels_last": copy.deepcopy(model).to(memory_format=torch.channels_last),
        "folded": fold_batchnorm(model),
        "folded16": fold_batchnorm(model, torch.bfloat16),  # what tl.embed runs under bf16 autocast
    }


def fp32_ladder(model: torch.nn.Module, nets: dict, batches, labels: torch.Tensor) -> list[tuple]:
    """The fp32 rungs of the forward ladder: from the anchor's training step to BatchNorm folded."""
    im = torch.inference_mode
    return [
        ("anchor: train-mode BN, autograd, fp32, batch 32", anchor_step(nets["plain"], labels), batches(32)),
        ("eval + no_grad, fp32, batch 32", forward_pass(model, torch.no_grad, False), batches(32)),
        ("eval + inference_mode, fp32, batch 32", forward_pass(model, im, False), batches(32)),
        ("+ channels_last input", forward_pass(model, im, False), batches(32, True)),
        ("+ channels_last weights too", forward_pass(nets["channels_last"], im, False), batches(32, True)),
        ("+ BatchNorm folded into conv, fp32", forward_pass(nets["folded"], im, False), batches(32, True)),
    ]


def bf16_ladder(model: torch.nn.Module, nets: dict, batches, embed_batch: int) -> list[tuple]:
    """The bf16 rungs of the forward ladder, up to what tl.embed runs (for CPUs with native bf16)."""
    im, folded = torch.inference_mode, nets["folded"]
    configs = [
        ("bf16 autocast alone (contiguous, BN not folded), batch 32", forward_pass(model, im, True), batches(32)),
        ("channels_last + bf16 autocast, batch 32", forward_pass(model, im, True), batches(32, True)),
        ("channels_last + bf16 autocast, batch 16", forward_pass(model, im, True), batches(16, True)),
        ("channels_last + bf16 autocast + BN folded, batch 32", forward_pass(folded, im, True), batches(32, True)),
    ]
    configs += [
        (f"channels_last + bf16 autocast + BN folded, batch {bs}", forward_pass(folded, im, True), batches(bs, True))
        for bs in sorted({16, 64, embed_batch} - {32})
    ]
    label = f"channels_last + bf16 autocast + BN folded into bf16 weights (tl.embed), batch {embed_batch}"
    configs.append((label, forward_pass(nets["folded16"], im, True), batches(embed_batch, True)))
    return configs


def ablate_forward(args: argparse.Namespace, model: torch.nn.Module, train: ImageTensors, preprocess) -> dict:
    """3. The forward pass: a ladder of techniques, ms per image on preprocessed 224 px batches."""
    import tlhelpers as tl

    n, embed_batch = args.forward_images, args.embed_batch
    x = torch.cat([preprocess(train.images[i : i + 64]) for i in range(0, n, 64)])[:n]

    def batches(size: int, channels_last: bool = False) -> list[torch.Tensor]:
        return split_batches(x, n, size, channels_last)

    nets = ladder_nets(model)
    bf16_ok = tl.device.fast_cpu_autocast()
    configs = fp32_ladder(model, nets, batches, train.labels[:n])
    if bf16_ok:
        configs += bf16_ladder(model, nets, batches, embed_batch)
    int8 = int8_model(model, x[:32])
    if (
        int8 is not None
    ):  # measured for comparison only: torch.ao.quantization is deprecated, the course does not use it
        label = "int8 static quantization (torch.ao, deprecated; not used), batch 32"
        configs.append((label, forward_pass(int8[0], torch.inference_mode, False), batches(32, True)))
    ladder = ladder_ms(configs, args.reps)
    # Last, because it cannot be undone in this process: glibc keeps freed activation buffers for the next batch
    # (tl.device.reuse_freed_memory, which the course workflow above calls; every row above ran with glibc's default).
    if tl.device.reuse_freed_memory():
        if bf16_ok:
            best, label = nets["folded16"], "channels_last + bf16 autocast + BN folded into bf16 weights"
        else:
            best, label = nets["folded"], "channels_last + BN folded, fp32"
        label = f"{label}, batch {embed_batch}, + freed memory kept for reuse"
        kept = (label, forward_pass(best, torch.inference_mode, bf16_ok), batches(embed_batch, True))
        ladder += ladder_ms([kept], args.reps)
    return {
        "n_images": n,
        "bf16_native": bf16_ok,
        "reps": args.reps,
        "ladder": ladder,
        "int8_quantize_seconds": int8[1] if int8 else None,
    }


def ablate_caching(model: torch.nn.Module, train: ImageTensors, preprocess) -> dict:
    """4. Feature caching: one uncached epoch of head training (backbone in the loop, fast path otherwise)."""
    import tlhelpers as tl

    loader = tl.make_loader(train, batch_size=32, shuffle=True, seed=0)
    t = time.perf_counter()
    tl.fit(model, loader, epochs=1, lr=1e-3, transform=preprocess, progress=False)
    return {
        "uncached_epoch": time.perf_counter() - t,
        "note": "backbone forward every epoch (tl.fit, frozen backbone, same fast path); 10 epochs = 10x",
    }


def int8_features(quantized: torch.nn.Module, images: ImageTensors, preprocess, batch_size: int) -> torch.Tensor:
    """Features of ``images`` from the int8 body, in channels_last batches of ``batch_size``."""
    with torch.inference_mode():
        return torch.cat(
            [
                quantized(preprocess(images.images[i : i + batch_size]).contiguous(memory_format=torch.channels_last))
                for i in range(0, len(images), batch_size)
            ]
        )


def ablate_precision(
    args: argparse.Namespace, model: torch.nn.Module, images: tuple, preprocess, bf16_ok: bool
) -> dict:
    """5. Precision: fp32 vs bf16 (vs int8, for comparison) features, same images, same head training."""
    import tlhelpers as tl

    train, test = images

    def accuracies(features: tuple[torch.Tensor, torch.Tensor]) -> dict:
        spread = accuracy_by_seed((features[0], train.labels), (features[1], test.labels), args.seeds)
        return {f"accuracy_epochs_{epochs}": accs for epochs, accs in spread.items()}

    precision, features = {}, {}
    for name, amp in (("fp32", False), ("bf16", True)):
        t = time.perf_counter()
        options = {"batch_size": args.embed_batch, "amp": amp, "fold_bn": bool(args.fold_bn)}
        features[name] = tuple(tl.embed(model, split, preprocess, **options)[0] for split in (train, test))
        precision[name] = {"embed_seconds": time.perf_counter() - t, **accuracies(features[name])}
    t = time.perf_counter()
    quantized = int8_model(model, preprocess(train.images[:32]))
    if quantized is not None:
        features["int8"] = tuple(int8_features(quantized[0], d, preprocess, args.embed_batch) for d in (train, test))
        precision["int8"] = {
            "embed_seconds": time.perf_counter() - t,
            "quantize_seconds": quantized[1],
            **accuracies(features["int8"]),
            "note": "torch.ao static quantization, x86 backend, calibrated on 32 train images; deprecated API",
        }
    for name, (train_features, _) in features.items():
        cos = torch.nn.functional.cosine_similarity(features["fp32"][0], train_features, dim=1)
        precision[name]["cosine_to_fp32"] = {"mean": cos.mean().item(), "min": cos.min().item()}
    precision["bf16_autocast_active"] = bf16_ok
    return precision
