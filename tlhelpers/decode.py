"""Image files as uint8 tensors: Pillow decoding, EXIF rotation, any mode to RGB, HEIC through pillow-heif.

JPEGs are decoded in draft mode straight to the smallest scale that still covers the asked size, so a
12-megapixel photo never exists in memory at full size; every other format is decoded once and resized.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from .errors import first_line

__all__ = ["IMG_EXTENSIONS", "decode_files", "heic_support", "image_size_arg", "read_size"]

IMG_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".heic", ".heif",
)  # fmt: skip
HEIC_EXTENSIONS = (".heic", ".heif")
_HEIC: list[str] = []  # "" once the opener is registered, else why it could not be


def heic_support() -> str:
    """Register pillow-heif's opener with Pillow (once); ``""`` when HEIC/HEIF files can be read, else why not."""
    if not _HEIC:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _HEIC.append("")
        except Exception as e:  # ImportError, or a broken libheif build
            _HEIC.append(
                f"HEIC/HEIF images need pillow-heif ({first_line(e, 80, with_type=True)}): pip install pillow-heif"
            )
    return _HEIC[0]


def image_size_arg(image_size: object) -> int | None:
    """``image_size`` checked: ``None`` or a positive whole number, else one ValueError naming it."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive whole number of pixels (e.g. 64) or None, got {image_size!r}.")
    return int(image_size)


def _reason(e: BaseException, path: str) -> str:
    """Why ``path`` could not be read, in a few words: ``e.strerror`` for OS errors (no path, no stray colon)."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        return e.strerror
    return first_line(e).replace(f" '{path}'", "").replace(path, "it")


def _eight_bit(im):
    """16-bit and 32-bit grey (``I;16*``, ``I``) and float (``F``) images as 8-bit ``L``, scaled, not clipped."""
    from PIL import Image

    if not (im.mode.startswith("I") or im.mode == "F"):
        return im
    a = np.asarray(im).astype(np.float64)
    top = float(np.nanmax(a)) if a.size else 0.0
    if im.mode == "F":
        a = a * 255.0 if top <= 1.0 else a  # float images in [0, 1], else taken as [0, 255]
    elif im.mode.startswith("I;16") or top > 255:
        a = a / (257.0 if top <= 65535 else top / 255.0)  # 16-bit: 65535 -> 255 (a 32-bit range: its maximum)
    return Image.fromarray(np.nan_to_num(a).round().clip(0, 255).astype(np.uint8), "L")


def _to_rgb(im):
    """Any Pillow mode as RGB: transparency is composited on white (not dropped to black), CMYK/P/L converted."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _open(path: str):
    """``PIL.Image.open`` with the HEIC opener registered first when ``path`` is a HEIC/HEIF file."""
    from PIL import Image

    if path.lower().endswith(HEIC_EXTENSIONS) and heic_support():
        raise ValueError(heic_support())
    return Image.open(path)


def _open_rgb(path: str, size: int | None):
    """Open one file as an upright RGB Pillow image; with ``size``, the central square resized to size x size.

    JPEGs are decoded in draft mode straight to the smallest scale (1/2, 1/4, 1/8) that still covers ``size``,
    so a 12-megapixel photo never exists in memory at full size; then one antialiased resize of the crop box.
    """
    from PIL import Image, ImageOps

    with _open(path) as im:
        if size is not None and im.format == "JPEG":
            im.draft("RGB", (size, size))  # shorter side stays >= size
        im.load()
        im = _eight_bit(im)
        if "exif" in im.info or "Raw profile type exif" in im.info:  # the check is cheap, the EXIF parse is not
            ImageOps.exif_transpose(im, in_place=True)  # phone photos: rotate as the camera said
        if size is not None and im.size != (size, size):
            w, h = im.size
            side = min(w, h)
            box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
            if im.mode == "P":
                im = _to_rgb(im)
            im = im.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
        return _to_rgb(im)


def read_size(path: str) -> tuple[int, int] | None:
    """(width, height) of an image file as it will be decoded (EXIF rotation applied), from its header only:
    no pixel is decoded. ``None`` when the header cannot be read (decoding then names the file)."""
    try:
        with _open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1) if "exif" in im.info else 1
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _decode(path: str, size: int | None) -> torch.Tensor:
    """One image file as a (3, H, W) uint8 tensor, upright (EXIF), any mode converted to RGB; with ``size``
    resized (shorter side) and centre-cropped to size x size. An unreadable file is a ValueError naming it;
    running out of memory is a MemoryError naming the file (never "unreadable")."""
    try:
        img = torch.from_numpy(np.array(_open_rgb(path, size))).permute(2, 0, 1)
    except MemoryError:
        dims = read_size(path)
        px = f" ({dims[0]} x {dims[1]} pixels)" if dims else ""
        raise MemoryError(
            f"Out of memory while decoding {path}{px}: close other notebooks or programs, or load fewer images "
            "(n=...) or smaller ones (image_size=...)."
        ) from None
    except Exception as e:  # UnidentifiedImageError, truncated files, permissions: name the file
        raise ValueError(f"Cannot read image file {path}: {_reason(e, path)}") from None
    return img.contiguous()


def check_same_size(paths: Sequence[str]) -> None:
    """Without ``image_size`` every image must have one size: read the headers (no decoding) and raise on the
    first two that differ, naming both, before any pixel is decoded."""
    first = None
    for p in paths:
        dims = read_size(p)
        if dims is None:
            continue  # unreadable: decoding names it (or skips it with skip_bad)
        if first is None:
            first = (p, dims)
        elif dims != first[1]:
            (p0, (w0, h0)), (w, h) = first, dims
            raise ValueError(
                f"Images have different sizes: {p0} is {w0} x {h0} and {p} is {w} x {h} pixels. "
                "Pass image_size=N (e.g. image_size=64) to resize and centre-crop every image to N x N."
            )


def _decode_all(
    paths: Sequence[str],
    size: int | None,
    skip_bad: bool = False,
    num_workers: int = 0,
    check_headers: bool = False,
) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Decode ``paths``: (images, indices of the files kept, [(path, reason)] of the files skipped).

    The result is allocated once (N x 3 x H x W) and filled as files are decoded; without ``size`` a file
    of another size is an error naming it, and with ``check_headers`` the headers are read first, so a
    folder of mixed-size photos fails before any of them is decoded.
    ``num_workers`` > 1 decodes in that many threads (Pillow releases the GIL while decoding).
    """
    size = image_size_arg(size)
    if size is None and check_headers:
        check_same_size(paths)

    def one(p: str) -> torch.Tensor | str:
        try:
            return _decode(p, size)
        except ValueError as e:
            if not skip_bad:
                raise
            return str(e).split(": ", 1)[-1]

    if num_workers and num_workers > 1 and len(paths) > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(num_workers)
        results = pool.map(one, paths)
    else:
        pool, results = None, map(one, paths)
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8) if size is not None else None
    kept, bad = [], []
    try:
        for i, (p, r) in enumerate(zip(paths, results)):
            if isinstance(r, str):
                bad.append((p, r))
                continue
            if out is None:
                out = torch.empty(len(paths), *r.shape, dtype=torch.uint8)
            elif out.shape[1:] != r.shape:  # a header that lied about the size: name both files
                raise ValueError(
                    f"Images have different sizes: {paths[kept[0]]} is {out.shape[3]} x {out.shape[2]} and {p} is "
                    f"{r.shape[2]} x {r.shape[1]} pixels. Pass image_size=N (e.g. image_size=64) to resize them."
                )
            out[len(kept)] = r
            kept.append(i)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if out is None:
        out = torch.empty(0, 3, size or 32, size or 32, dtype=torch.uint8)
    return out[: len(kept)], kept, bad


def decode_files(paths: Sequence[str | os.PathLike], size: int | None = None, num_workers: int = 0) -> torch.Tensor:
    """Decode image files into one uint8 tensor (N, 3, S, S); an unreadable file is an error naming it.

    With ``size=None`` all images must share one size (true for CIFAR-10); otherwise each is
    resized (shorter side) and centre-cropped to ``size`` so they can be stacked. Any format and
    mode Pillow reads (JPEG, PNG incl. 16-bit, WebP, HEIC, grayscale, RGBA, CMYK) becomes RGB; EXIF rotation
    is applied. ``num_workers`` > 1 decodes in threads.
    """
    size = image_size_arg(size)
    if not paths:
        return torch.empty(0, 3, size or 32, size or 32, dtype=torch.uint8)
    return _decode_all([os.fspath(p) for p in paths], size, num_workers=num_workers)[0]
