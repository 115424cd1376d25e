"""The recipe that builds the offline course backbone.

torchvision's ``resnet18`` (unchanged: ``conv1``, ``layer1``..``layer4``, ``fc``) trained from
scratch on the 40,000 CIFAR-10 training images of the 8 classes that are *not* cats or dogs,
at 64 px input (CIFAR's 32 px upsampled, so layer4 still sees a 2x2 map), with random
translation and flips done on whole batches, SGD + Nesterov with a one-cycle schedule, label
smoothing, channels_last and bfloat16 autocast where the CPU supports it.

Cats and dogs never enter pretraining (asserted below), so "cat vs dog" is genuine transfer.

    python -m tlhelpers pretrain --epochs 16 --out tlhelpers/weights
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from . import settings
from .batch import prepare_batch
from .data import CIFAR10_CLASSES, ImageTensors, load_cifar_split
from .device import autocast, model_device
from .models import preprocess_from
from .train import index_batches, model_loss, on_device, train_steps

SOURCE_CLASSES = [c for c in CIFAR10_CLASSES if c not in ("cat", "dog")]
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]  # CIFAR-10 channel statistics


def augment(
    x: torch.Tensor, size: int, generator: torch.Generator, max_shift: float = 4 / 32, min_scale: float = 1.0
) -> torch.Tensor:
    """Random zoom (crop of ``min_scale``..1 of the area) + translation (up to ``max_shift`` of the width)
    + horizontal flip + resize to ``size``, batched.

    ``x``: float batch (N, 3, H, W). One ``affine_grid`` + ``grid_sample`` call for the whole batch.
    """
    n = x.shape[0]
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    zoom = (min_scale + (1 - min_scale) * torch.rand(n, generator=generator)).sqrt()  # side length fraction
    room = (1 - zoom)[:, None] + 2 * max_shift  # keep the crop (mostly) inside the image
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * room
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = flip * zoom, zoom, shift
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def preprocessing(size: int) -> nn.Module:
    """The backbone's preprocessing (what ``load_backbone(weights="course")`` returns): resize to ``size``,
    normalise with the CIFAR-10 channel statistics. Pretraining uses it too, so the two never differ."""
    return preprocess_from({"size": size, "mean": MEAN, "std": STD})


def normalize(x_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """A uint8 batch as model input at ``size`` px, through :func:`preprocessing` (resized in float)."""
    return prepare_batch(x_uint8.float().div_(255), None, preprocessing(size))


@torch.inference_mode()
def accuracy(model: nn.Module, data: ImageTensors, size: int, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(data), batch):
        x = normalize(data.images[i : i + batch], size)
        with autocast(model_device(model)):
            correct += (model(x).argmax(1) == data.labels[i : i + batch]).sum().item()
    return correct / len(data)


@torch.inference_mode()
def pooled_features(model: nn.Module, images: torch.Tensor, size: int, batch: int = 500) -> np.ndarray:
    """Global-average-pooled layer4 features (the 512-d input of ``fc``)."""
    model.eval()
    body = nn.Sequential(*list(model.children())[:-1])
    out = []
    for i in range(0, len(images), batch):
        x = normalize(images[i : i + batch], size)
        with autocast(model_device(model)):
            out.append(body(x).flatten(1).float())
    return torch.cat(out).numpy()


def probe(model: nn.Module, size: int, n_train: int = 1000, seed: int = 0) -> float:
    """Cat-vs-dog linear probe (logistic regression on pooled features), tested on all 2,000 test images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr = load_cifar_split("train", ("cat", "dog"), n_train, seed, source="folder")
    te = load_cifar_split("test", ("cat", "dog"), None, seed, source="folder")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    clf.fit(pooled_features(model, tr.images, size), tr.labels.numpy())
    return float(clf.score(pooled_features(model, te.images, size), te.labels.numpy()))


def pretrain(
    out: str | Path,
    epochs: int = 16,
    size: int = 64,
    batch_size: int = 256,
    lr: float = 0.2,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    min_scale: float = 1.0,
    seed: int = 0,
    probe_every: int = 0,
    log=print,
) -> dict:
    """Train the course backbone and write ``course_resnet18.pt`` (fp16) + ``course_resnet18.json`` to ``out``."""
    assert "cat" not in SOURCE_CLASSES and "dog" not in SOURCE_CLASSES
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train = load_cifar_split("train", SOURCE_CLASSES, None, seed, source="folder")
    test = load_cifar_split("test", SOURCE_CLASSES, None, seed, source="folder")
    assert set(train.classes) == set(SOURCE_CLASSES) and not {"cat", "dog"} & set(train.classes)
    log(
        f"loaded {len(train)} train / {len(test)} test images of {len(SOURCE_CLASSES)} classes in "
        f"{time.perf_counter() - t0:.1f}s"
    )

    model = torchvision.models.resnet18(num_classes=len(SOURCE_CLASSES)).to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
        momentum=0.9,
        nesterov=True,
    )
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    g = torch.Generator().manual_seed(seed)
    loss_of = model_loss(
        model,
        transform=preprocessing(size),
        augment=lambda x: augment(x.float().div_(255), size, g, min_scale=min_scale),
        criterion=lambda logits, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing),
    )
    history = []
    for epoch in range(epochs):
        model.train()
        t = time.perf_counter()
        batches = ((train.images[idx], train.labels[idx]) for idx in index_batches(len(train), batch_size, g))
        done = train_steps(on_device(batches, model_device(model)), loss_of, opt, sched)
        rec = {
            "epoch": epoch + 1,
            "train_loss": done["train_loss"],
            "train_acc": done["train_acc"],
            "seconds": time.perf_counter() - t,
        }
        if epoch == epochs - 1 or (probe_every and (epoch + 1) % probe_every == 0):
            rec["test_acc"] = accuracy(model, test, size)
            if probe_every:
                rec["cat_dog_probe"] = probe(model, size)
        history.append(rec)
        log(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}))

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(sd, out / "course_resnet18.pt")
    digest = settings.sha256_file(out / "course_resnet18.pt")
    # the test accuracy of the fp16 weights as shipped
    shipped = torchvision.models.resnet18(num_classes=len(SOURCE_CLASSES)).to(memory_format=torch.channels_last)
    shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    meta = {
        "name": "course_resnet18",
        "architecture": "torchvision.models.resnet18",
        "source_dataset": "CIFAR-10 train split (JPEG re-encoding), classes without cat and dog",
        "source_classes": SOURCE_CLASSES,
        "source_images": len(train),
        "source_test_images": len(test),
        "source_test_accuracy": round(accuracy(shipped, test, size), 4),
        "preprocessing": {
            "size": size,
            "mean": MEAN,
            "std": STD,
            "note": "CIFAR-10 32 px images resized (bilinear, antialias) to size x size",
        },
        "recipe": {
            "function": "tlhelpers.pretrain.pretrain",
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "SGD nesterov momentum 0.9",
            "lr_max": lr,
            "schedule": "OneCycleLR pct_start=0.25",
            "weight_decay": weight_decay,
            "label_smoothing": label_smoothing,
            "seed": seed,
            "augmentation": f"random zoom (area {min_scale}..1) + translate +-4/32 (reflection) + horizontal flip, "
            f"batched",
            "precision": "bfloat16 autocast where the CPU supports it, channels_last",
        },
        "dtype": "float16",
        "train_seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
        "sha256": digest,
        "history": history,
    }
    (out / "course_resnet18.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(
        f"wrote {out / 'course_resnet18.pt'} ({(out / 'course_resnet18.pt').stat().st_size / 1e6:.1f} MB), "
        f"test accuracy {meta['source_test_accuracy']:.4f}, {meta['train_seconds']:.0f}s"
    )
    return meta
