"""The one way a batch becomes model input: on the device, three channels, preprocessed, channels_last."""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["prepare_batch", "three_channels"]


def three_channels(x: torch.Tensor) -> torch.Tensor:
    """An image or batch (..., C, H, W) with C = 3; a 1-channel (grey) one is widened to 3 (a view, no copy).
    Any other channel count is one ValueError naming it."""
    if x.ndim < 3 or x.shape[-3] not in (1, 3):
        raise ValueError(
            f"Expected images as (N, 3, H, W) or (N, 1, H, W) for grey, got shape {tuple(x.shape)}: "
            "convert them to RGB (tl.load_image_folder and tl.decode.decode_files do)."
        )
    return x.expand(*x.shape[:-3], 3, *x.shape[-2:]) if x.shape[-3] == 1 else x


def prepare_batch(
    x: torch.Tensor,
    device: torch.device | str | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The one way a batch becomes model input: move it to ``device``, widen grey to 3 channels, then apply
    ``transform`` (the weights' preprocessing, which takes uint8 or float in [0, 1]); without a transform,
    uint8 is scaled to [0, 1] and float input is taken as already in [0, 1] (never divided by 255 twice).
    4-D output is channels_last.
    """
    if device is not None:
        x = x.to(device, non_blocking=True)
    if x.ndim == 4 and x.shape[1] == 1:
        x = three_channels(x)  # grey: the same pixels in R, G and B
    if transform is not None:
        x = transform(x)
    elif x.dtype == torch.uint8:
        x = x.float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
