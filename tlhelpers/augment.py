"""Data augmentation on whole uint8 batches: every image gets its own random crop, flip and colour change.

``torchvision.transforms.v2`` applied to a batch tensor draws *one* set of random parameters for the
whole batch (every image gets the same crop). These functions draw them per image and apply them in
one vectorised call each (``torchvision.ops.roi_align`` crops and resizes all boxes at once), so no
Python loop runs per image.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.ops import roi_align

__all__ = ["random_flip", "random_resized_crop", "color_jitter", "augmenter"]


def random_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of a batch horizontally with probability ``p`` (one vectorised op)."""
    mask = torch.rand(x.shape[0], device=x.device, generator=generator) < p
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def random_resized_crop(
    x: torch.Tensor,
    size: int | None = None,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random box (``scale`` of the area, aspect ``ratio``) from each image, resized to ``size`` (default: H).

    As ``v2.RandomResizedCrop`` but with its own box per image; uint8 in, uint8 out.
    """
    n, _, h, w = x.shape
    size = size or h
    area = _uniform(n, *scale, generator) * h * w
    r = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator))
    bw = torch.sqrt(area * r).clamp(max=w)
    bh = torch.sqrt(area / r).clamp(max=h)
    x0 = _uniform(n, 0, 1, generator) * (w - bw)
    y0 = _uniform(n, 0, 1, generator) * (h - bh)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + bw, y0 + bh], dim=1).to(x.device)
    out = roi_align(x.float(), boxes, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scale each image's brightness, contrast and saturation by its own factor in ``[1 - v, 1 + v]`` (uint8)."""
    n = x.shape[0]

    def factor(v: float) -> torch.Tensor:
        return _uniform(n, 1 - v, 1 + v, generator).to(x.device)[:, None, None, None]

    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device)[None, :, None, None]
    y = x.float() * factor(brightness)
    mean = (y * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    y = (y - mean) * factor(contrast) + mean
    grey = (y * weights).sum(1, keepdim=True)
    y = (y - grey) * factor(saturation) + grey
    return y.round_().clamp_(0, 255).to(torch.uint8)


def augmenter(
    size: int | None = None,
    scale: tuple[float, float] = (0.35, 1.0),
    flip: bool = True,
    jitter: float = 0.2,
    seed: int = 0,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A seeded batch augmentation for ``fit(augment=...)``: random resized crop, horizontal flip, colour jitter."""
    g = torch.Generator().manual_seed(seed)

    def augment(x: torch.Tensor) -> torch.Tensor:
        x = random_resized_crop(x, size, scale, generator=g)
        if flip:
            x = random_flip(x, generator=g if x.device.type == "cpu" else None)
        return color_jitter(x, jitter, jitter, jitter, generator=g) if jitter else x

    return augment
