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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .decode import IMG_EXTENSIONS, _decode_all, decode_files, image_size_arg
from .device import loader_kwargs
from .settings import cifar_dir, data_source, torchvision_cifar_root

__all__ = [
    "CIFAR10_CLASSES",
    "ImageTensors",
    "load_cifar_pair",
    "load_cifar_split",
    "load_image_folder",
    "make_loader",
    "scan_image_folder",
    "load_digits_task",
    "train_val_split",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageTensors(Dataset):
    """Images as one ``uint8`` tensor (N, 3, H, W) with integer labels 0..K-1 and class names.

    Indexing with a list or tensor of indices returns a whole batch in one gather, which is
    what :func:`make_loader` uses, so no per-image Python work happens while training.
    ``skipped``: the files and folders :func:`load_image_folder` could not read and left out (with
    ``skip_bad=True``); a :meth:`subset` (a split) does not repeat them. ``loaded``: images per class as
    loaded from the folder, kept by subsets, so a split can say how many its parent had.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[str] | None = field(default=None, repr=False)
    skipped: list[str] = field(default_factory=list, repr=False)
    loaded: list[int] | None = field(default=None, repr=False)

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
        bad = f", {len(self.skipped)} unreadable file(s) skipped" if self.skipped else ""
        return f"ImageTensors({len(self)} images {tuple(self.images.shape[1:])}, {per}{bad})"

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "ImageTensors":
        idx = torch.as_tensor(idx, dtype=torch.long)
        paths = [self.paths[i] for i in idx.tolist()] if self.paths is not None else None
        loaded = list(self.loaded) if self.loaded is not None else None
        return ImageTensors(self.images[idx], self.labels[idx], list(self.classes), paths, loaded=loaded)


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
            first = torch.nonzero(data.labels == c).flatten()[:1].tolist()
            where = f" (in {Path(data.paths[first[0]]).parent})" if data.paths and first else ""
            had = data.loaded[c] if data.loaded is not None else n
            part = f" in this part, of {had} loaded from its folder (earlier splits took the rest)" if had > n else ""
            raise ValueError(
                f"Class {data.classes[c]!r}{where} has {n} image(s){part}: a train/validation split needs at least 2 "
                f"per class. Add images to it, split fewer times, or leave the class out."
            )
        members = torch.nonzero(data.labels == c).flatten()
        members = members[torch.randperm(n, generator=g)]
        k = min(max(1, round(val_fraction * n)), n - 1)
        val_idx.append(members[:k])
        train_idx.append(members[k:])
    # keep the original order within each part (it is already class-mixed for the course's loaders)
    tr, va = torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values
    return data.subset(tr), data.subset(va)


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


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(folder: str, dataset: str | None, seen: set, unreadable: list[tuple[str, str]]) -> list[str]:
    """Image files below ``folder``, files before sub-folders, each in name order; each real file and folder
    once (``seen``: their (st_dev, st_ino), shared by all classes of a dataset). A link from ``folder`` into
    ``dataset`` but out of ``folder`` is left out with a warning naming it; unreadable folders go to
    ``unreadable`` as (folder, reason)."""
    found: list[str] = []
    base = os.path.realpath(folder)

    def visit(d: str) -> None:
        try:
            st = os.stat(d)
            with os.scandir(d) as it:
                entries = {e.name: e for e in it if e.name[0] != "."}
        except OSError as e:
            unreadable.append((d, e.strerror or type(e).__name__))
            return
        if (st.st_dev, st.st_ino) in seen:  # a link loop, or a second link to one folder
            return
        seen.add((st.st_dev, st.st_ino))
        dirs = []
        for name in sorted(entries):
            e = entries[name]
            try:
                if not e.is_symlink():  # the common case: no system call, all from the directory listing
                    if e.is_dir():
                        dirs.append(e.path)
                        continue
                    key = (st.st_dev, e.inode()) if name.lower().endswith(IMG_EXTENSIONS) else None
                else:
                    real = os.path.realpath(e.path)
                    if dataset is not None and _within(real, dataset) and not _within(real, base):
                        warnings.warn(
                            f"Left out the link {e.path} -> {real}: it leads out of the class folder {folder} into "
                            "the dataset, whose images belong to their own class. Remove the link, or copy the images.",
                            stacklevel=4,
                        )
                        continue
                    if e.is_dir():
                        dirs.append(e.path)
                        continue
                    target = os.stat(e.path) if name.lower().endswith(IMG_EXTENSIONS) else None
                    key = (target.st_dev, target.st_ino) if target is not None else None
            except OSError:  # a broken link: decoding names it
                if name.lower().endswith(IMG_EXTENSIONS):
                    found.append(e.path)
                continue
            if key is None or key in seen:
                continue  # not an image, or a hard link or a second link to a file already listed
            seen.add(key)
            found.append(e.path)
        for sub in dirs:
            visit(sub)

    visit(os.fspath(folder))
    return found


def _unreadable_error(folder: str, reason: str, remedy: str = "") -> OSError:
    err = PermissionError if "ermission" in reason else OSError
    return err(f"Cannot read {folder}: {reason}. Fix its permissions (chmod -R u+rX {folder}){remedy}.")


def image_files_below(folder: str | os.PathLike) -> list[str]:
    """Every image file below ``folder`` (sub-folders included, followed links too), in a fixed order.

    Hidden files and folders and files with other extensions are skipped; each real file and folder is
    listed once (a link loop, two links to one folder, hard links). An unreadable sub-folder is an error
    naming it and the reason.
    """
    unreadable: list[tuple[str, str]] = []
    found = _walk(os.fspath(folder), None, set(), unreadable)
    if unreadable:
        raise _unreadable_error(*unreadable[0], ", or move it out")
    return found


def _scan(path: Path) -> tuple[list[str], list[str], np.ndarray, list[tuple[int, str, str]]]:
    """(class names, files, targets, [(class index, folder, reason)] of unreadable folders) of a tree."""
    if not path.is_dir():
        raise FileNotFoundError(f"Image folder not found: {path}")
    try:
        with os.scandir(path) as it:
            classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise _unreadable_error(str(path), e.strerror or type(e).__name__) from None
    files, targets, problems, seen = [], [], [], set()
    dataset = os.path.realpath(path)
    for ci, c in enumerate(classes):
        unreadable: list[tuple[str, str]] = []
        found = _walk(str(path / c), dataset, seen, unreadable)
        problems += [(ci, d, why) for d, why in unreadable]
        files += found
        targets += [ci] * len(found)
    return classes, files, np.asarray(targets, dtype=np.int64), problems


def scan_image_folder(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """List an ImageFolder tree without opening any image: (class names, file paths, targets).

    As torchvision's ``ImageFolder``: each sub-folder of ``path`` is a class and every image file
    anywhere below it (sub-folders included) belongs to that class; hidden files and folders
    (``.DS_Store``, ``.ipynb_checkpoints``) and files with other extensions are skipped. Each real file
    is listed once; a link from a class folder into another part of the tree is left out with a warning.
    An unreadable folder is an error naming it and the reason.
    """
    path = Path(path).expanduser()
    classes, files, targets, problems = _scan(path)
    if problems:
        raise _unreadable_error(*problems[0][1:])
    _require_images(path, classes, files)
    return classes, files, targets


def _require_images(path: Path, classes: list[str], files: list[str]) -> None:
    if not classes or not files:
        raise FileNotFoundError(
            f"No class folders with images in {path}: expected {path}/<class_name>/<image>.jpg "
            f"(extensions {', '.join(IMG_EXTENSIONS)})."
        )


def load_image_folder(
    path: str | os.PathLike,
    classes: Sequence[str] | None = None,
    n: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    skip_bad: bool = False,
    num_workers: int = 0,
) -> ImageTensors:
    """Load (a balanced subset of) an ImageFolder tree ``path/<class>/<image>`` into memory.

    ``classes``: the class folders to use (default all, at least 2); ``n``: total images, split
    evenly over the classes with a fixed ``seed`` (default all); ``image_size``: resize and
    centre-crop every image to this square size (needed when image sizes differ; photos of any size
    are decoded straight to it, so memory stays N x image_size^2; without it, differing sizes are found from
    the file headers before anything is decoded). HEIC/HEIF photos are read through pillow-heif. An
    unreadable file or folder is an error naming it and the reason; ``skip_bad=True`` skips such files and
    folders instead, warns with their names and count and lists them in ``.skipped`` of the result (running
    out of memory is never skipped). ``num_workers`` > 1 decodes in that many threads.
    """
    image_size = image_size_arg(image_size)
    root = Path(path).expanduser()
    names, files, targets, problems = _scan(root)
    _require_images(root, names, files)
    if classes is None and len(names) < 2:
        raise ValueError(
            f"{root} has one class folder ({names[0]!r}): a classifier needs at least 2, as "
            f"{root}/<class_name>/<image>.jpg with one folder per class."
        )
    ids = _resolve_classes(classes if classes is not None else names, names)
    problems = [(ci, d, why) for ci, d, why in problems if ci in ids]  # a class left out may be unreadable
    if problems and not skip_bad:
        raise _unreadable_error(*problems[0][1:], ", leave its class out with classes=[...], or pass skip_bad=True")
    for ci, d, why in problems:
        warnings.warn(f"Skipped {d}: {why} (class {names[ci]!r}).", stacklevel=2)
        if not (targets == ci).any():
            raise ValueError(f"No readable image in class {names[ci]!r}: cannot read {d}: {why}.")
    idx, lab = balanced_indices(targets, ids, n, seed, names=names, where=f" in {root}")
    sel = [files[i] for i in idx]
    images, kept, bad = _decode_all(sel, image_size, skip_bad, num_workers, check_headers=True)
    chosen = [names[i] for i in ids]
    labels = torch.as_tensor(lab[kept], dtype=torch.long)
    if bad:
        shown = "; ".join(f"{os.path.relpath(p, root)} ({why})" for p, why in bad[:10])
        more = f"; and {len(bad) - 10} more (all in .skipped)" if len(bad) > 10 else ""
        warnings.warn(
            f"Skipped {len(bad)} unreadable image file(s) of {len(sel)} in {root}: {shown}{more}.", stacklevel=2
        )
        counts = torch.bincount(labels, minlength=len(chosen)).tolist()
        empty = [c for c, k in zip(chosen, counts) if k == 0]
        if empty:
            raise ValueError(f"No readable image left in class {empty[0]!r} in {root}: every file in it was skipped.")
    skipped = [d for _, d, _ in problems] + [p for p, _ in bad]
    loaded = torch.bincount(labels, minlength=len(chosen)).tolist()
    return ImageTensors(images, labels, chosen, [sel[i] for i in kept], skipped=skipped, loaded=loaded)


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
