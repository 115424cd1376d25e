"""The measured workflows, each run as its own subprocess (``perf_workflow.py --worker KIND``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .common import CAT_DOG, IMAGENET_MEAN, IMAGENET_STD, PHASES, anchor_preprocess, anchor_selection, bench_cache
from .prepare import prepare_standin

if TYPE_CHECKING:
    from tlhelpers.data import ImageTensors

# ---------------------------------------------------------------- helpers of the workers


def anchor_images(args: argparse.Namespace) -> tuple[ImageTensors, ImageTensors, float]:
    """The anchor's train and test images, decoded, and the seconds it took to select them from labels alone."""
    from tlhelpers.data import ImageTensors
    from tlhelpers.decode import decode_files

    start = time.perf_counter()
    train_files, train_labels = anchor_selection(args.jpeg_root, "train", args.n_train)
    test_files, test_labels = anchor_selection(args.jpeg_root, "test", args.n_test)
    select_seconds = time.perf_counter() - start
    train = ImageTensors(decode_files(train_files), train_labels, ["cat", "dog"])
    test = ImageTensors(decode_files(test_files), test_labels, ["cat", "dog"])
    return train, test, select_seconds


def frozen_backbone() -> tuple[torch.nn.Module, object]:
    """The course backbone with a 2-class ``fc``, frozen but for ``fc``, and its own preprocessing."""
    import tlhelpers as tl

    model, native = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.freeze(model)
    tl.unfreeze(model, "fc")
    return model, native


def head_accuracy(head: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``features`` that ``head`` classifies as ``labels``."""
    with torch.inference_mode():
        return (head(features).argmax(1) == labels).float().mean().item()


def seeded_head_accuracy(train_xy: tuple, test_xy: tuple, epochs: int, seed: int, lr: float = 1e-3) -> float:
    """Test accuracy of a head trained on cached (features, labels) for ``epochs`` epochs from ``seed``."""
    import tlhelpers as tl

    head, _ = tl.fit_head(*train_xy, 2, epochs=epochs, lr=lr, batch_size=32, seed=seed, progress=False)
    return head_accuracy(head, *test_xy)


def accuracy_by_seed(train_xy: tuple, test_xy: tuple, n_seeds: int, lr: float = 1e-3) -> dict[int, list[float]]:
    """Test accuracies of heads trained from seeds ``0 .. n_seeds - 1``, after 1 and after 10 epochs."""
    return {
        epochs: [seeded_head_accuracy(train_xy, test_xy, epochs, seed, lr) for seed in range(n_seeds)]
        for epochs in (1, 10)
    }


def anchor_labels(labels: torch.Tensor) -> torch.Tensor:
    """CIFAR-10 labels as the anchor maps them: cat 0, dog 1."""
    return torch.tensor([CAT_DOG.index(label.item()) for label in labels])


def _anchor_objects(data_root: str):
    """The anchor's datasets and transform, built exactly as it builds them (integrity check bypassed)."""
    import torchvision
    import torchvision.datasets.cifar as _cifar
    from torchvision import datasets, transforms

    torchvision.datasets.CIFAR10._check_integrity = lambda self: True
    _cifar.check_integrity = lambda *a, **k: True
    transform = transforms.Compose(
        [transforms.Resize(224), transforms.ToTensor(), transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)]
    )
    train = datasets.CIFAR10(root=data_root, train=True, download=True, transform=transform)
    test = datasets.CIFAR10(root=data_root, train=False, download=True, transform=transform)
    return train, test, transform


# ---------------------------------------------------------------- workers (run as subprocesses)


def worker_prepare(args: argparse.Namespace) -> dict:
    """Everything the orchestrator needs from torch/tlhelpers: machine and weights info, paths, the stand-in weights."""
    import tlhelpers as tl
    from tlhelpers.models import course_backbone_info
    from tlhelpers.settings import cifar_dir

    info = course_backbone_info()
    return {
        "machine": {
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "tlhelpers": str(Path(tl.__file__).parent),
            "bf16_autocast": bool(tl.device.fast_cpu_autocast()),
        },
        "weights": {"name": info["name"], "sha256": info["sha256"], "provisional": info["name"] == "PROVISIONAL"},
        "bench_cache": str(bench_cache()),
        "jpeg_root": str(args.jpeg_root or cifar_dir()),
        "torch_home": None if args.course_only else str(prepare_standin()),
    }


def worker_course(args: argparse.Namespace) -> dict:
    """The course's workflow through tlhelpers, timed phase by phase like the anchor (imports are not timed)."""
    import tlhelpers as tl

    # opt-in in tlhelpers; part of the course's workflow here (off: TLHELPERS_MALLOC_TUNE=0)
    tl.device.reuse_freed_memory()
    start = time.perf_counter()
    train, test, seconds = course_images(args, start)
    t = time.perf_counter()
    model, preprocess = course_model(args)
    seconds["setup"] = time.perf_counter() - t
    options = {"batch_size": args.embed_batch, "amp": not args.fp32, "fold_bn": bool(args.fold_bn)}
    train_xy, test_xy, accuracy = course_train_and_test(args, model, preprocess, options, (train, test), seconds)
    seconds["total"] = time.perf_counter() - start

    # Beyond the timed one-epoch workflow: 10 head epochs on the same cached features, and the seed spread.
    t = time.perf_counter()
    tl.fit_head(*train_xy, 2, epochs=10, lr=args.lr, batch_size=32, seed=0, progress=False)
    seconds["head_10_epochs"] = time.perf_counter() - t
    seconds["train_10_epochs"] = seconds["embed_train"] + seconds["head_10_epochs"]
    more = ("filter_select", "filter_decode", "embed_train", "head_10_epochs", "train_10_epochs")
    ten_epochs = seeded_head_accuracy(train_xy, test_xy, 10, 0, args.lr)
    spread = accuracy_by_seed(train_xy, test_xy, args.seeds, args.lr)
    return {
        "phases": {k: seconds[k] for k in PHASES},
        **{k: seconds[k] for k in more},
        "test_accuracy": accuracy,
        "test_accuracy_10_epochs": ten_epochs,
        "accuracy_by_seed": {"epochs_1": spread[1], "epochs_10": spread[10]},
        "n_train": len(train),
        "n_test": len(test),
        "threads": torch.get_num_threads(),
        "embed_options": options,
        "reuse_freed_memory": tl.device.reuse_freed_memory(),
        "preprocess": repr(preprocess).replace("\n", " "),
        "image_size": int(preprocess(train.images[:1]).shape[-1]),
    }


def course_images(args: argparse.Namespace, start: float) -> tuple[ImageTensors, ImageTensors, dict[str, float]]:
    """The course workflow's filter phase: its train and test images, and the seconds it took since ``start``."""
    import tlhelpers as tl

    if args.selection == "anchor":  # the anchor's exact images, found from labels alone
        train, test, select_seconds = anchor_images(args)
    else:  # the course's own balanced, seeded subset
        train, test = tl.load_cifar_pair(
            ("cat", "dog"), args.n_train, args.n_test, seed=0, source="folder", root=args.jpeg_root
        )
        select_seconds = float("nan")
    filter_seconds = time.perf_counter() - start
    seconds = {"filter_select": select_seconds, "filter": filter_seconds}
    seconds["filter_decode"] = filter_seconds - select_seconds
    return train, test, seconds


def course_model(args: argparse.Namespace) -> tuple[torch.nn.Module, object]:
    """The course workflow's setup phase: the frozen backbone and the preprocessing it is run with."""
    from tlhelpers.embed import fast_preprocess

    model, native = frozen_backbone()
    preprocess = native if args.native else anchor_preprocess()  # the anchor's Resize(224) + Normalize(ImageNet)
    if args.fast_preprocess:
        preprocess = fast_preprocess(preprocess)  # same maths, normalize at 32 px, then resize once in float
    return model, preprocess


def course_train_and_test(args, model, preprocess, options: dict, images: tuple, seconds: dict) -> tuple:
    """The course workflow's timed training epoch (embed once, fit the head) and eval: features and accuracy."""
    import tlhelpers as tl

    train, test = images
    t = time.perf_counter()
    train_xy = tl.embed(model, train, preprocess, **options)
    seconds["embed_train"] = time.perf_counter() - t
    head, _ = tl.fit_head(*train_xy, 2, epochs=1, lr=args.lr, batch_size=32, seed=0, progress=False)
    model.fc = head
    seconds["train_1_epoch"] = time.perf_counter() - t

    t = time.perf_counter()
    test_xy = tl.embed(model, test, preprocess, **options)
    accuracy = head_accuracy(head, *test_xy)
    seconds["eval"] = time.perf_counter() - t
    return train_xy, test_xy, accuracy


def worker_anchor_scaling(args: argparse.Namespace) -> dict:
    """A parameterised copy of the anchor's logic: its filter loop once (it enumerates all 60,000 images
    whatever ``n``), then for each training-set size its model setup, one training epoch and its eval."""
    start = time.perf_counter()
    train_full, test_full, _ = _anchor_objects(args.data_root)
    train_idx = [i for i, (_, label) in enumerate(train_full) if label in CAT_DOG]
    test_idx = [i for i, (_, label) in enumerate(test_full) if label in CAT_DOG][: args.n_test]
    filter_seconds = time.perf_counter() - start
    rows = []
    for n in args.sizes:
        rows.append(anchor_scaling_row((train_full, train_idx[:n]), (test_full, test_idx), filter_seconds))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"rows": rows}


def anchor_scaling_row(train: tuple, test: tuple, filter_seconds: float) -> dict:
    """The anchor's setup, one training epoch and eval on (dataset, indices) pairs, timed: one row of scaling."""
    from torch.utils.data import DataLoader, Subset

    start = time.perf_counter()
    torch.manual_seed(0)
    train_loader = DataLoader(Subset(*train), batch_size=32, shuffle=True)
    test_loader = DataLoader(Subset(*test), batch_size=32, shuffle=False)
    model, criterion, optimizer = anchor_model()
    setup = time.perf_counter() - start
    t = time.perf_counter()
    anchor_train_epoch(model, train_loader, criterion, optimizer)
    train_seconds = time.perf_counter() - t
    t = time.perf_counter()
    accuracy = anchor_accuracy(model, test_loader)
    eval_seconds = time.perf_counter() - t
    return {
        "n_train": len(train[1]),
        "filter": filter_seconds,
        "setup": setup,
        "train_1_epoch": train_seconds,
        "eval": eval_seconds,
        "total": filter_seconds + setup + train_seconds + eval_seconds,
        "test_accuracy": accuracy,
    }


def anchor_model() -> tuple:
    """The anchor's model, loss and optimizer: ImageNet resnet18, frozen, a new 2-class ``fc`` under Adam 1e-3."""
    from torchvision import models

    model = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
    for p in model.parameters():
        p.requires_grad = False
    model.fc = torch.nn.Linear(model.fc.in_features, 2)
    return model, torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.fc.parameters(), lr=1e-3)


def anchor_train_epoch(model: torch.nn.Module, loader, criterion, optimizer) -> None:
    """One training epoch, as the anchor runs it."""
    model.train()
    for images, labels in loader:
        labels = anchor_labels(labels)
        optimizer.zero_grad()
        criterion(model(images), labels).backward()
        optimizer.step()


def anchor_accuracy(model: torch.nn.Module, loader) -> float:
    """Test accuracy, as the anchor measures it."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            labels = anchor_labels(labels)
            correct += (model(images).argmax(1) == labels).sum().item()
            total += labels.size(0)
    return correct / total


def work(args: argparse.Namespace) -> dict:
    """Run the worker ``args.worker`` (one of ``WORKER_KINDS``) in this process; return its result."""
    from .ablation import worker_ablate

    kinds = {
        "prepare": worker_prepare,
        "course": worker_course,
        "ablate": worker_ablate,
        "anchor-scaling": worker_anchor_scaling,
    }
    return kinds[args.worker](args)
