"""Datasets as in-memory uint8 tensors: CIFAR-10 class subsets and any ImageFolder tree.

Images are small (CIFAR-10 is 32x32), so the course decodes each selected file once into
one ``uint8`` tensor and does every transform on whole batches. Class filtering reads the
labels only (``targets`` / the folder index) and never decodes an image it will not use.

Where the data comes from (argument ``source`` or the environment variable
``TLHELPERS_DATA_SOURCE``):

* ``"folder"``: an ImageFolder tree ``<root>/train/<class>/*.jpg`` and ``<root>/test/<class>/*.jpg``
  at ``root`` or ``$TLHELPERS_CIFAR_DIR`` (default ``~/.cache/tlhelpers/cifar10-jpg``).
  ``python -m tlhelpers prefetch --archive cifar10-jpg.tar.gz`` unpacks one there.
* ``"torchvision"``: ``torchvision.datasets.CIFAR10`` under ``$TLHELPERS_HOME/torchvision``,
  downloaded on first use (needs internet once).
* ``"auto"`` (default): the folder tree if it exists, else torchvision's copy.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .device import loader_kwargs
from .settings import cache_dir, cifar_dir, data_source, torchvision_cifar_root

__all__ = [
    "CIFAR10_CLASSES",
    "ImageTensors",
    "cache_dir",
    "cifar_dir",
    "unpack_archive",
    "load_cifar_pair",
    "load_cifar_split",
    "load_image_folder",
    "make_loader",
    "scan_image_folder",
    "load_digits_task",
    "random_flip",
    "train_val_split",
    "prepare_batch",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class ImageTensors(Dataset):
    """Images as one ``uint8`` tensor (N, 3, H, W) with integer labels 0..K-1 and class names.

    Indexing with a list or tensor of indices returns a whole batch in one gather, which is
    what :func:`make_loader` uses, so no per-image Python work happens while training.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {tuple(self.images.shape)} {self.images.dtype}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]

    def __repr__(self) -> str:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        per = ", ".join(f"{c}: {n}" for c, n in zip(self.classes, counts))
        return f"ImageTensors({len(self)} images {tuple(self.images.shape[1:])}, {per})"

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "ImageTensors":
        idx = torch.as_tensor(idx, dtype=torch.long)
        paths = [self.paths[i] for i in idx.tolist()] if self.paths is not None else None
        return ImageTensors(self.images[idx], self.labels[idx], list(self.classes), paths)


def train_val_split(data: ImageTensors, val_fraction: float = 0.2, seed: int = 0) -> tuple[ImageTensors, ImageTensors]:
    """Split ``data`` into (train, validation), stratified: each class keeps its share in both parts.

    Seeded (the same ``seed`` gives the same split) and disjoint. Each class puts
    ``round(val_fraction * its count)`` images, at least one, into validation and keeps at least one for
    training; a class with fewer than 2 images cannot be split and is an error naming it.
    """
    if not isinstance(data, ImageTensors):
        raise TypeError(
            f"train_val_split takes an ImageTensors (from tl.load_cifar_pair, tl.load_image_folder, ...), "
            f"got {type(data).__name__}."
        )
    if isinstance(val_fraction, bool) or not 0 < float(val_fraction) < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (e.g. 0.2), got {val_fraction!r}.")
    g = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    counts = torch.bincount(data.labels, minlength=len(data.classes))
    for c, n in enumerate(counts.tolist()):
        if n < 2:
            raise ValueError(
                f"Class {data.classes[c]!r} has {n} image(s): a train/validation split needs at least 2 "
                f"per class. Add images to it, or leave the class out."
            )
        members = torch.nonzero(data.labels == c).flatten()
        members = members[torch.randperm(n, generator=g)]
        k = min(max(1, round(val_fraction * n)), n - 1)
        val_idx.append(members[:k])
        train_idx.append(members[k:])
    # keep the original order within each part (it is already class-mixed for the course's loaders)
    tr, va = torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values
    return data.subset(tr), data.subset(va)


def prepare_batch(
    x: torch.Tensor,
    device: torch.device | str | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The one way a batch becomes model input: move it to ``device``, then apply ``transform`` (the weights'
    preprocessing, which takes uint8 or float in [0, 1]); without a transform, uint8 is scaled to [0, 1]
    and float input is taken as already in [0, 1] (never divided by 255 twice). 4-D output is channels_last.
    """
    if device is not None:
        x = x.to(device, non_blocking=True)
    if transform is not None:
        x = transform(x)
    elif x.dtype == torch.uint8:
        x = x.float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


# ---------------------------------------------------------------- class selection (labels only)


def _resolve_classes(classes: Sequence[str | int], available: Sequence[str]) -> list[int]:
    """Map class names (any case, if that is unambiguous) or indices to indices in ``available``,
    with one clear error for bad input."""
    if isinstance(classes, str):
        classes = [classes]
    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"A classification task needs at least 2 classes, got {classes!r}.")
    out = []
    for c in classes:
        if isinstance(c, (int, np.integer)) and 0 <= int(c) < len(available):
            out.append(int(c))
        elif c in available:
            out.append(list(available).index(c))
        elif isinstance(c, str) and [a.lower() for a in available].count(c.lower()) == 1:  # "Cat" -> "cat"
            out.append([a.lower() for a in available].index(c.lower()))
        else:
            raise ValueError(f"Unknown class {c!r}. Valid classes: {', '.join(available)}.")
    if len(set(out)) != len(out):
        raise ValueError(f"Classes must be distinct, got {classes!r}.")
    return out


def balanced_indices(
    targets: np.ndarray,
    class_ids: Sequence[int],
    n_total: int | None,
    seed: int = 0,
    split: str = "",
    names: Sequence[str] | None = None,
    where: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n_total // K`` indices per class (all if ``None``) with a fixed seed, from labels alone.

    Returns (indices into ``targets``, new labels 0..K-1 in the order of ``class_ids``).
    ``names`` (the name of each class id) and ``where`` (e.g. " in /data/pets") make error messages
    name the class and its folder; a class without
    any image is an error either way (it would be a class the model can never learn).
    """
    targets = np.asarray(targets)
    k = len(class_ids)
    what = f"{split} images" if split else "images"
    if n_total is not None and (isinstance(n_total, bool) or not isinstance(n_total, (int, np.integer))):
        raise TypeError(f"The number of {what} must be a whole number or None (all), got {n_total!r}.")
    if n_total is not None and n_total < k:
        raise ValueError(f"Asked for {n_total} {what} but there are {k} classes: need at least one per class.")
    rng = np.random.default_rng(seed)
    idx, lab = [], []
    for new, old in enumerate(class_ids):
        members = np.flatnonzero(targets == old)
        cls = (f"class {names[old]!r}" if names is not None else f"class #{old}") + where
        if len(members) == 0:
            raise ValueError(f"{cls} has no {what}: add images to it, or leave it out with classes=[...].")
        per = len(members) if n_total is None else n_total // k
        if per > len(members):
            raise ValueError(f"Asked for {per} {what} per class but {cls} has only {len(members)}.")
        idx.append(np.sort(rng.permutation(members)[:per]))
        lab.append(np.full(per, new))
    idx, lab = np.concatenate(idx), np.concatenate(lab)
    order = rng.permutation(len(idx))  # mix the classes so shuffle=False batches are not one class each
    return idx[order], lab[order]


def remap_labels(labels: torch.Tensor, class_ids: Sequence[int]) -> torch.Tensor:
    """Vectorised label remapping: original ids in ``class_ids`` become 0..K-1 (others -1)."""
    lut = torch.full((int(max(class_ids)) + 1,), -1, dtype=torch.long)
    lut[torch.as_tensor(list(class_ids))] = torch.arange(len(class_ids))
    return lut[labels]


# ---------------------------------------------------------------- ImageFolder trees


def scan_image_folder(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """List an ImageFolder tree without opening any image: (class names, file paths, targets).

    As torchvision's ``ImageFolder``: each sub-folder of ``path`` is a class and every image file
    anywhere below it (sub-folders included) belongs to that class; hidden files and folders
    (``.DS_Store``, ``.ipynb_checkpoints``) and files with other extensions are skipped.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"Image folder not found: {path}")
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    files, targets = [], []
    for ci, c in enumerate(classes):
        found = []
        for root, dirs, names in os.walk(path / c, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [
                os.path.join(root, n)
                for n in sorted(names)
                if n.lower().endswith(IMG_EXTENSIONS) and not n.startswith(".")
            ]
        files += found
        targets += [ci] * len(found)
    if not classes or not files:
        raise FileNotFoundError(
            f"No class folders with images in {path}: expected {path}/<class_name>/<image>.jpg "
            f"(extensions {', '.join(IMG_EXTENSIONS)})."
        )
    return classes, files, np.asarray(targets)


def _decode(path: str, size: int | None) -> torch.Tensor:
    """One image file as a (3, H, W) uint8 tensor (Pillow: fast for small JPEGs, reads every common format)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            img = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    except Exception as e:  # UnidentifiedImageError, truncated files, permissions: name the file
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"Cannot read image file {path}: {detail}") from None
    if size is not None and tuple(img.shape[1:]) != (size, size):
        img = _resize_center_crop(img, size)
    return img.contiguous()


def _resize_center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` and take the central square (uint8 in, uint8 out)."""
    h, w = img.shape[1:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    x = F.interpolate(img[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8)


def decode_files(paths: Sequence[str], size: int | None = None) -> torch.Tensor:
    """Decode image files into one uint8 tensor (N, 3, S, S).

    With ``size=None`` all images must share one size (true for CIFAR-10); otherwise each is
    resized (shorter side) and centre-cropped to ``size`` so they can be stacked.
    """
    if not paths:
        return torch.empty(0, 3, size or 32, size or 32, dtype=torch.uint8)
    imgs = [_decode(p, size) for p in paths]
    shapes = {tuple(i.shape) for i in imgs}
    if len(shapes) > 1:
        raise ValueError(f"Images have different sizes {sorted(shapes)[:3]}...: pass image_size=N to resize them.")
    return torch.stack(imgs)


def load_image_folder(
    path: str | os.PathLike,
    classes: Sequence[str] | None = None,
    n: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
) -> ImageTensors:
    """Load (a balanced subset of) an ImageFolder tree ``path/<class>/<image>`` into memory.

    ``classes``: the class folders to use (default all, at least 2); ``n``: total images, split
    evenly over the classes with a fixed ``seed`` (default all); ``image_size``: resize and
    centre-crop every image to this square size (needed when image sizes differ).
    """
    names, files, targets = scan_image_folder(path)
    ids = _resolve_classes(classes if classes is not None else names, names)
    idx, lab = balanced_indices(targets, ids, n, seed, names=names, where=f" in {Path(path).expanduser()}")
    sel = [files[i] for i in idx]
    images = decode_files(sel, image_size)
    return ImageTensors(images, torch.as_tensor(lab, dtype=torch.long), [names[i] for i in ids], sel)


def safe_extract(tf: tarfile.TarFile, dest: Path) -> None:
    """Extract ``tf`` into ``dest``, refusing members that would land outside it (absolute paths, '..',
    links, devices). Uses tarfile's "data" filter where Python has it (3.10.12+, 3.11.4+)."""
    if hasattr(tarfile, "data_filter"):
        tf.extractall(dest, filter="data")
        return
    for m in tf.getmembers():
        parts = Path(m.name).parts
        if Path(m.name).is_absolute() or ".." in parts or not (m.isfile() or m.isdir()):
            raise ValueError(f"refusing to unpack {m.name!r} from the archive: it is not a plain file inside it")
    tf.extractall(dest)


def unpack_archive(archive: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Unpack ``cifar10-jpg.tar.gz`` (train/ and test/ at its top) into ``dest`` (default :func:`cifar_dir`)."""
    archive, dest = Path(archive).expanduser(), Path(dest or cifar_dir()).expanduser()
    if not archive.is_file():
        raise FileNotFoundError(f"Archive not found: {archive}")
    if (dest / "train").is_dir() and (dest / "test").is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tf:
        safe_extract(tf, tmp)
    tops = [tmp, *(p for p in tmp.iterdir() if p.is_dir())]
    root = next((p for p in tops if (p / "train").is_dir() and (p / "test").is_dir()), None)
    if root is None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileNotFoundError(
            f"{archive} has no train/ and test/ folders (at its top or one folder down): "
            "it is not the course's cifar10-jpg.tar.gz."
        )
    root.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)  # what is left when the tree was one folder down
    return dest


# ---------------------------------------------------------------- CIFAR-10 from either source


def _source(source: str | None) -> str:
    source = (source or data_source()).lower()
    if source not in ("auto", "folder", "torchvision"):
        raise ValueError(f"Unknown data source {source!r}: use 'auto', 'folder' or 'torchvision'.")
    if source == "auto":
        source = "folder" if (cifar_dir() / "train").is_dir() else "torchvision"
    return source


MISSING_DATA = (
    "CIFAR-10 is not available offline: run `python -m tlhelpers prefetch` with internet, or "
    "`python -m tlhelpers prefetch --archive cifar10-jpg.tar.gz` to unpack the course archive into {dir}."
)


def load_cifar_split(
    split: str,
    classes: Sequence[str | int] = ("cat", "dog"),
    n: int | None = None,
    seed: int = 0,
    source: str | None = None,
    root: str | os.PathLike | None = None,
) -> ImageTensors:
    """A balanced CIFAR-10 subset of ``split`` ("train"/"test"): ``n`` images (default all) over ``classes``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    ids = _resolve_classes(classes, CIFAR10_CLASSES)
    names = [CIFAR10_CLASSES[i] for i in ids]
    if root is not None or _source(source) == "folder":
        base = Path(root or cifar_dir()).expanduser()
        folder = base / split
        if not folder.is_dir():
            raise FileNotFoundError(
                MISSING_DATA.format(dir=base)
                if root is None
                else f"No CIFAR-10 {split}/ folder in {base}: expected {base}/{split}/<class>/*.jpg."
            )
        folder_names, files, targets = scan_image_folder(folder)
        fids = _resolve_classes(names, folder_names)
        idx, lab = balanced_indices(targets, fids, n, seed, split, names=folder_names)
        sel = [files[i] for i in idx]
        return ImageTensors(decode_files(sel), torch.as_tensor(lab, dtype=torch.long), names, sel)
    ds = _torchvision_cifar(split == "train")
    idx, lab = balanced_indices(np.asarray(ds.targets), ids, n, seed, split, names=CIFAR10_CLASSES)
    images = torch.from_numpy(ds.data[idx]).permute(0, 3, 1, 2).contiguous()  # N,32,32,3 -> N,3,32,32
    return ImageTensors(images, torch.as_tensor(lab, dtype=torch.long), names)


def _torchvision_cifar(train: bool):
    from torchvision.datasets import CIFAR10

    root = torchvision_cifar_root()
    try:
        return CIFAR10(str(root), train=train, download=not (root / "cifar-10-batches-py").is_dir())
    except Exception as e:  # URLError, socket errors, ...: say what is missing and the remedy
        raise RuntimeError(MISSING_DATA.format(dir=cifar_dir()) + f" (download failed: {type(e).__name__})") from None


def load_cifar_pair(
    classes: Sequence[str | int] = ("cat", "dog"),
    n_train: int | None = 1000,
    n_test: int | None = 200,
    seed: int = 0,
    source: str | None = None,
    root: str | os.PathLike | None = None,
) -> tuple[ImageTensors, ImageTensors]:
    """The CIFAR-10 class task: balanced train/test subsets of ``classes`` (any 2+ names or indices).

    ``n_train`` / ``n_test`` are totals split evenly over the classes (``None``: all images).
    Defaults reproduce the course workflow: cat vs dog, 1,000 train / 200 test, seed 0.
    """
    return (
        load_cifar_split("train", classes, n_train, seed, source, root),
        load_cifar_split("test", classes, n_test, seed, source, root),
    )


# ---------------------------------------------------------------- a different domain, offline


def load_digits_task(n_train: int | None = None, seed: int = 0, size: int = 32) -> tuple[ImageTensors, ImageTensors]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes) as RGB uint8 images.

    A domain far from CIFAR-10's photos, available offline. Upscaled to ``size`` and split
    1,297 train / 500 test with a fixed seed; ``n_train`` takes a balanced subset of the train part.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float()[:, None] / 16.0  # N,1,8,8 in [0,1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.as_tensor(d.target, dtype=torch.long)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    test_idx, train_idx = perm[:500], perm[500:]
    classes = [str(i) for i in range(10)]
    train = ImageTensors(x[train_idx], y[train_idx], classes)
    if n_train is not None:
        idx, _ = balanced_indices(train.labels.numpy(), list(range(10)), n_train, seed, "train")
        train = train.subset(idx)
    return train, ImageTensors(x[test_idx], y[test_idx], classes)


# ---------------------------------------------------------------- loading batches


def make_loader(
    dataset: Dataset,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader that is fast for in-memory tensors and safe in Jupyter.

    For :class:`ImageTensors` each batch is one tensor gather (no per-image collate); other
    datasets get :func:`tlhelpers.device.loader_kwargs`. ``seed`` fixes the shuffle order.
    """
    g = torch.Generator().manual_seed(seed)
    if isinstance(dataset, ImageTensors):
        sampler = RandomSampler(dataset, generator=g) if shuffle else SequentialSampler(dataset)
        return DataLoader(
            dataset,
            sampler=BatchSampler(sampler, batch_size, drop_last),
            batch_size=None,
            pin_memory=torch.device(device).type == "cuda",
        )
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last, **loader_kwargs(device)
    )


def random_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of a batch horizontally with probability ``p`` (one vectorised op)."""
    mask = torch.rand(x.shape[0], device=x.device, generator=generator) < p
    return torch.where(mask[:, None, None, None], x.flip(-1), x)
