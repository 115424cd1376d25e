"""Embeddings: the penultimate-layer vectors of a backbone (512-d for ResNet18, 1280-d for EfficientNet-Lite0),
and similarity search."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .batch import prepare_batch
from .data import ImageTensors, make_loader
from .decode import decode_files
from .device import autocast, model_device, native_bf16
from .freeze import stage_modules
from .models import head_of
from .stages import RESNET_STAGES, feature_stages

LAYERS = RESNET_STAGES[1:-1]  # layer1 .. layer4: ResNet's feature stages (other models: stages.feature_stages)

__all__ = [
    "BatchPreprocess",
    "embed",
    "extract_embedding",
    "fast_preprocess",
    "fold_batchnorm",
    "nearest_neighbors",
    "stage_features",
    "stage_peaks",
]


def fold_batchnorm(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """An inference-only view of ``model`` with each BatchNorm that follows a convolution folded into it.

    Same outputs in eval mode up to float rounding, with one memory pass less per layer: a faster frozen
    backbone for feature extraction (``embed(fold_bn=True)``; off by default). Only the folded convolutions get new
    weights, stored in ``dtype`` (default: their own; ``torch.bfloat16`` under bf16 autocast halves the
    memory and skips autocast's cast); every other module is shared with ``model``, which is left unchanged.
    A model that ``torch.fx`` cannot trace is returned as it is.
    """
    from torch.fx import Node, symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    was_training = model.training
    model.eval()  # trace the eval branch of a forward that asks self.training
    try:
        gm = symbolic_trace(model)  # shares model's leaf modules: nothing is copied yet
    except Exception:  # untraceable control flow: no folding, same results
        return model
    finally:
        model.train(was_training)
    modules = dict(gm.named_modules())
    originals = {id(m) for m in model.modules()}
    folded: list[str] = []
    for node in list(gm.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        src = node.args[0] if node.args else None
        if not (
            type(bn) is nn.BatchNorm2d  # not timm's BatchNormAct2d: its activation would be lost
            and bn.running_mean is not None
            and isinstance(src, Node)
            and src.op == "call_module"
            and type(modules.get(src.target)) is nn.Conv2d
            and len(src.users) == 1
        ):
            continue
        conv = modules[src.target]
        with torch.no_grad():
            w, b = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
        with torch.device("meta"):
            fused = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                bias=True,
                padding_mode=conv.padding_mode,
            )
        fused.weight = nn.Parameter(w.detach().to(dtype or w.dtype), requires_grad=False)
        fused.bias = nn.Parameter(b.detach().to(dtype or b.dtype), requires_grad=False)
        name = "folded_" + src.target.replace(".", "_")
        while hasattr(gm, name):
            name += "_"
        gm.add_submodule(name, fused)
        folded += [src.target, node.target]
        src.target = name
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
    used = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    for target in set(folded) - used:  # drop the unfolded originals from the view (never from model)
        parent, _, leaf = target.rpartition(".")
        owner = gm.get_submodule(parent)
        if id(owner) not in originals:
            delattr(owner, leaf)
    gm.graph.lint()
    gm.recompile()
    gm.training = False
    return gm


class BatchPreprocess(nn.Module):
    """Resize (shorter side) + centre crop + normalize for whole batches, normalizing *before* resizing.

    The same result as torchvision's ``ImageClassification`` preset (``weights.transforms()``) up to
    its rounding of the resized image to uint8 (under 0.01 after normalization), but when small
    images are upscaled (CIFAR's 32 px to 224 px) the per-pixel work runs on 32x32 pixels instead
    of 224x224 and the resize runs once, in float: several times faster. Input uint8 (N, 3, H, W)
    in [0, 255] or float in [0, 1]; output float32.
    """

    def __init__(
        self, crop_size: int, mean, std, resize_size: int | None = None, mode: str = "bilinear", antialias: bool = True
    ) -> None:
        super().__init__()
        self.crop_size, self.resize_size = int(crop_size), int(resize_size or crop_size)
        self.mode, self.antialias = mode, antialias
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.functional import center_crop

        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)  # affine per channel: commutes with the resize
        h, w = x.shape[-2:]
        short, r = min(h, w), self.resize_size
        size = (r, int(r * w / h)) if h <= w else (int(r * h / w), r)  # torchvision's shorter-side rule
        if size != (h, w):
            x = F.interpolate(x, size=size, mode=self.mode, antialias=self.antialias and short > r, align_corners=False)
        return center_crop(x, [self.crop_size]) if size != (self.crop_size, self.crop_size) else x

    def extra_repr(self) -> str:
        return f"crop_size={self.crop_size}, resize_size={self.resize_size}, mode={self.mode!r}"


def fast_preprocess(transform: Callable) -> Callable:
    """The :class:`BatchPreprocess` equivalent of a :class:`tlhelpers.models.Preprocess` (what ``load_backbone``
    returns) or of a torchvision ``ImageClassification`` preset; any other transform is returned unchanged."""
    from torchvision.transforms import InterpolationMode

    modes = {InterpolationMode.BILINEAR: "bilinear", InterpolationMode.BICUBIC: "bicubic"}
    preset = all(hasattr(transform, a) for a in ("crop_size", "resize_size", "mean", "std", "antialias"))
    if not preset or getattr(transform, "interpolation", None) not in modes:
        return transform
    return BatchPreprocess(
        transform.crop_size[0],
        transform.mean,
        transform.std,
        transform.resize_size[0],
        modes[transform.interpolation],
        bool(transform.antialias),
    )


def default_batch_size(transform: Callable | None, data: object = None) -> int:
    """Images per forward batch: 256 for small inputs (up to 96 px, e.g. the course backbone's 64 px), 16 for
    larger ones such as ImageNet's 224 px, where a batch of 256 would hold gigabytes of activations
    (the measurements behind 16 are in docs/performance.md).

    The input size is the transform's ``crop_size``, or, without a transform, the width of ``data``
    when it is an already preprocessed tensor.
    """
    size = getattr(transform, "crop_size", None)  # torchvision presets: [224]; BatchPreprocess: 224
    if size is None:
        size = data.shape[-1] if isinstance(data, torch.Tensor) and data.ndim == 4 else 64
    return 256 if (size[0] if isinstance(size, (list, tuple)) else size) <= 96 else 16


@torch.inference_mode()
def embed(
    model: nn.Module,
    data: Dataset | DataLoader | torch.Tensor,
    transform: Callable | None = None,
    batch_size: int | None = None,
    amp: bool = True,
    progress: bool = False,
    fold_bn: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """N x D embeddings (the input of the model's linear head) for a dataset, a loader or a uint8 batch.

    Runs in eval mode under ``inference_mode``, channels_last, and bfloat16 autocast where the
    hardware has it; the head's input is captured by a hook, so any model with a linear head works
    (ResNet18: D = 512; EfficientNet-Lite0: D = 1280, the pooled features before ``classifier``).
    Returns ``(embeddings float32 on CPU, labels or None)``. These are also the cached features for
    feature extraction: :func:`tlhelpers.train.fit_head` trains a head on them.
    With ``fold_bn=True`` it runs a view of the model with each BatchNorm folded into the convolution before
    it (:func:`fold_batchnorm`; exact in eval mode up to rounding). Off by default: it was not faster where
    measured (docs/performance.md).
    ``batch_size`` defaults to :func:`default_batch_size`.
    """
    batch_size = batch_size or default_batch_size(transform, data)
    device = model_device(model)
    captured: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    was_training = model.training
    model.eval()  # before tracing: a forward that branches on self.training is folded in its eval branch
    hook = None
    try:
        bf16 = amp and native_bf16(device)  # autocast would cast the folded weights to bf16 anyway: store them so
        runner = fold_batchnorm(model, torch.bfloat16 if bf16 else None) if fold_bn else model
        _, head = head_of(runner)
        hook = head.register_forward_hook(lambda m, inp, out: captured.append(inp[0].float().flatten(1).cpu()))
        if isinstance(data, torch.Tensor):
            batches = ((data[i : i + batch_size], None) for i in range(0, len(data), batch_size))
        elif isinstance(data, DataLoader):
            batches = data
        else:
            batches = make_loader(data, batch_size, device=device)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Embedding")
        for x, y in batches:
            x = prepare_batch(x, device, transform)  # rebinding frees the uint8 batch before the forward
            with autocast(device, enabled=amp):
                runner(x)
            if y is not None:
                labels.append(torch.as_tensor(y).cpu())
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    if not captured:
        raise ValueError("Nothing to embed: the data holds no images.")
    return torch.cat(captured), (torch.cat(labels) if labels else None)


def extract_embedding(
    path: str | os.PathLike, model: nn.Module, transform: Callable | None = None, image_size: int | None = None
) -> np.ndarray:
    """The embedding of one image file as a 1-D NumPy array (works with a batch of one)."""
    img = decode_files([str(path)], image_size)  # (1, 3, H, W) uint8; names the file if unreadable
    return embed(model, img, transform)[0][0].numpy()


def nearest_neighbors(
    query: torch.Tensor | np.ndarray, embeddings: torch.Tensor | np.ndarray, k: int = 5, exclude_self: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine neighbours of each query row among ``embeddings``: (indices, similarities).

    ``query`` may be one vector (D,) or a batch (Q, D). With ``exclude_self`` (query rows are rows
    of ``embeddings`` in the same order) each row's own index is skipped.
    """
    q = F.normalize(torch.as_tensor(query).float().reshape(-1, np.shape(query)[-1]), dim=1)
    e = F.normalize(torch.as_tensor(embeddings).float(), dim=1)
    sims = q @ e.T
    if exclude_self:
        sims[torch.arange(len(q)), torch.arange(len(q))] = -float("inf")
    k = min(k, e.shape[0] - int(exclude_self))
    top = sims.topk(k, dim=1)
    return top.indices, top.values


def _per_stage(
    model: nn.Module,
    data: ImageTensors | torch.Tensor,
    transform: Callable | None,
    stages: tuple[str, ...] | None,
    reduce: Callable[[torch.Tensor], object],
    batch_size: int | None,
    amp: bool,
) -> dict[str, list]:
    """Run ``data`` through ``model`` in eval mode and keep ``reduce(output)`` of each stage, batch by batch.

    A stage's output is that of its last module; ``stages=None``: the model's feature stages."""
    stages = feature_stages(model) if stages is None else tuple(stages)
    batch_size = batch_size or default_batch_size(transform, data)
    device = model_device(model)
    kept: dict[str, list] = {s: [] for s in stages}
    hooks = [
        stage_modules(model, s)[-1].register_forward_hook(lambda m, i, o, s=s: kept[s].append(reduce(o.float())))
        for s in stages
    ]
    images = data.images if isinstance(data, ImageTensors) else data
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                with autocast(device, enabled=amp):
                    model(prepare_batch(images[i : i + batch_size], device, transform))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return kept


def stage_features(
    model: nn.Module,
    data: ImageTensors | torch.Tensor,
    transform: Callable | None = None,
    stages: tuple[str, ...] | None = None,
    batch_size: int | None = None,
    amp: bool = True,
    grid: int = 1,
) -> dict[str, torch.Tensor]:
    """Average-pooled output of each stage: ``{stage: N x C}`` (for per-stage linear probes).

    ``stages`` default to the model's feature stages (:func:`tlhelpers.stages.feature_stages`; ResNet:
    layer1..layer4). ``grid=1`` averages each map over the whole image; ``grid=g`` averages over a g x g
    grid of regions and keeps them side by side (``N x C*g*g``), so the features still say *where* a pattern
    was. A transformer block's tokens (``N x L x D``) are averaged over the tokens.
    """

    def pool(o: torch.Tensor) -> torch.Tensor:
        return (o.mean(1) if o.ndim == 3 else F.adaptive_avg_pool2d(o, grid).flatten(1)).cpu()

    kept = _per_stage(model, data, transform, stages, pool, batch_size, amp)
    return {s: torch.cat(v) for s, v in kept.items()}


def stage_peaks(
    model: nn.Module,
    data: ImageTensors | torch.Tensor,
    transform: Callable | None = None,
    *,
    stages: tuple[str, ...] | None = None,
    amp: bool = True,
    batch_size: int | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
    """Where each channel of each stage responds most, per image: ``{stage: (peak N x C, row-col N x C x 2, (H, W))}``.

    ``peak`` is the channel's largest activation in the image's map and ``row-col`` its position in the
    H x W map: what :func:`tlhelpers.viz.show_top_patches` needs to cut out the top-activating patches.
    """

    def peaks(o: torch.Tensor):
        v, flat = o.flatten(2).max(dim=2)
        return v.cpu(), torch.stack([flat // o.shape[3], flat % o.shape[3]], dim=-1).cpu(), tuple(o.shape[2:])

    kept = _per_stage(model, data, transform, stages, peaks, batch_size, amp)
    return {s: (torch.cat([k[0] for k in v]), torch.cat([k[1] for k in v]), v[0][2]) for s, v in kept.items()}
