"""Matplotlib plots for the course: learning curves, image grids, confusion matrix, embeddings, filters."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "plot_history",
    "show_images",
    "plot_confusion",
    "confusion_matrix",
    "plot_embeddings",
    "show_filters",
    "show_feature_maps",
    "show_neighbors",
    "show_top_patches",
    "plot_lr_find",
]


def _hwc(img: torch.Tensor) -> np.ndarray:
    """A (3, H, W) uint8 or [0, 1] float tensor as an (H, W, 3) array for imshow."""
    img = torch.as_tensor(img).detach().cpu()
    if img.is_floating_point():
        img = img.clamp(0, 1)
    return img.permute(1, 2, 0).numpy()


def plot_history(history: Sequence[dict] | dict[str, Sequence[dict]], title: str = "Learning curves"):
    """Loss and accuracy per epoch (train and, if present, validation); several runs as a dict of histories."""
    runs = history if isinstance(history, dict) else {"": history}
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, (name, h) in enumerate(runs.items()):
        ep = [r["epoch"] for r in h]
        prefix = f"{name} " if name else ""
        color = {"color": f"C{k}"} if len(runs) > 1 else {}  # several runs: one colour per run, dashed = validation
        for key, ax, style in (
            ("train_loss", ax_l, "-"),
            ("val_loss", ax_l, "--"),
            ("train_acc", ax_a, "-"),
            ("val_acc", ax_a, "--"),
        ):
            if key in h[0]:
                ax.plot(ep, [r[key] for r in h], style, marker="o", ms=3, label=prefix + key.split("_")[0], **color)
    ax_l.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_a.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
    preds: Sequence[int] | torch.Tensor | None = None,
    ncols: int = 8,
    size: float = 1.4,
    title: str | None = None,
):
    """A grid of images with their true labels and, if given, predictions (wrong ones in red)."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.35)), squeeze=False)
    name = (lambda i: classes[int(i)]) if classes is not None else (lambda i: str(int(i)))
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(_hwc(images[i]), interpolation="nearest")
        text, color = "", "black"
        if labels is not None:
            text = name(labels[i])
        if preds is not None:
            text = f"{text}\npred: {name(preds[i])}" if text else f"pred: {name(preds[i])}"
            if labels is not None and int(preds[i]) != int(labels[i]):
                color = "red"
        ax.set_title(text, fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(
    labels: Sequence[int] | torch.Tensor, preds: Sequence[int] | torch.Tensor, num_classes: int
) -> np.ndarray:
    """K x K counts: row = true class, column = predicted class (one vectorised bincount)."""
    y, p = torch.as_tensor(labels).long(), torch.as_tensor(preds).long()
    return torch.bincount(y * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes).numpy()


def plot_confusion(labels, preds, classes: Sequence[str], title: str = "Confusion matrix"):
    """Confusion matrix with counts in the cells and accuracy in the title."""
    cm = confusion_matrix(labels, preds, len(classes))
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(classes), 1 + 0.6 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{v}", ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title=f"{title} (accuracy {np.trace(cm) / cm.sum():.1%})",
    )
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    return fig


def plot_embeddings(
    embeddings,
    labels,
    classes: Sequence[str] | None = None,
    method: str = "tsne",
    seed: int = 0,
    title: str | None = None,
    ax=None,
):
    """2-D scatter of embeddings coloured by class (t-SNE from scikit-learn, or PCA). Returns the 2-D points."""
    x = np.asarray(embeddings, dtype=np.float32)
    if len(x) < 3:
        raise ValueError(f"plot_embeddings needs at least 3 points, got {len(x)}.")
    if method == "tsne":
        from sklearn.manifold import TSNE

        pts = TSNE(
            n_components=2, random_state=seed, init="pca", perplexity=float(min(30, max(5, len(x) // 4), len(x) - 1))
        ).fit_transform(x)
    elif method == "pca":
        from sklearn.decomposition import PCA

        pts = PCA(n_components=2, random_state=seed).fit_transform(x)
    else:
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    labels = np.asarray(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(pts[m, 0], pts[m, 1], s=8, alpha=0.6, label=classes[c] if classes is not None else str(c))
    ax.legend(markerscale=2, fontsize=8)
    ax.set(title=title or f"{method.upper()} of {x.shape[1]}-d embeddings", xticks=[], yticks=[])
    return pts


def show_filters(weight: torch.Tensor, ncols: int = 16, title: str = "First-layer filters"):
    """The filters of the first conv layer (out, 3, k, k) as small RGB images, each scaled to [0, 1]."""
    w = weight.detach().float().cpu()
    lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo + 1e-8)
    nrows = -(-len(w) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.6, nrows * 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, f in enumerate(w):
        axes.flat[i].imshow(_hwc(f), interpolation="nearest")
    fig.suptitle(title)
    return fig


def show_feature_maps(maps: dict[str, torch.Tensor], n: int = 8, image: torch.Tensor | None = None):
    """The first ``n`` channels of each stage's feature maps for one image (``{stage: C x H x W}``)."""
    rows = len(maps) + (image is not None)
    fig, axes = plt.subplots(rows, n, figsize=(n * 1.1, rows * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    r = 0
    if image is not None:
        axes[0, 0].imshow(_hwc(image))
        axes[0, 0].set_title("input", fontsize=8)
        r = 1
    for stage, fm in maps.items():
        fm = fm.detach().float().cpu()
        for j in range(min(n, fm.shape[0])):
            axes[r, j].imshow(fm[j].numpy(), cmap="viridis")
        axes[r, 0].set_title(f"{stage} {tuple(fm.shape[1:])}", fontsize=8, loc="left")
        r += 1
    fig.tight_layout()
    return fig


def show_neighbors(
    query_image: torch.Tensor,
    images: torch.Tensor,
    indices: Sequence[int],
    sims: Sequence[float],
    labels=None,
    classes: Sequence[str] | None = None,
    query_label=None,
):
    """A query image followed by its nearest neighbours with their cosine similarity."""
    k = len(indices)
    fig, axes = plt.subplots(1, k + 1, figsize=(1.6 * (k + 1), 2), squeeze=False)
    axes = axes[0]
    name = (lambda i: classes[int(i)]) if classes is not None else (lambda i: str(int(i)))
    axes[0].imshow(_hwc(query_image))
    axes[0].set_title("query" + (f"\n{name(query_label)}" if query_label is not None else ""), fontsize=8)
    for ax, i, s in zip(axes[1:], indices, sims):
        ax.imshow(_hwc(images[int(i)]))
        ax.set_title((f"{name(labels[int(i)])}\n" if labels is not None else "") + f"cos {float(s):.2f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_top_patches(
    images: torch.Tensor,
    peaks: tuple[torch.Tensor, torch.Tensor, tuple[int, int]],
    channels: Sequence[int],
    size: int,
    patch: int,
    k: int = 8,
    title: str | None = None,
):
    """For each channel, the ``k`` image patches (``patch`` px of the image resized to ``size``) where it fires most.

    ``peaks`` is one stage of :func:`tlhelpers.embed.stage_peaks`; a patch is centred on the peak's map cell.
    """
    values, pos, (h, w) = peaks
    img = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    half = patch // 2
    fig, axes = plt.subplots(len(channels), k, figsize=(k * 0.9, len(channels) * 0.95), squeeze=False)
    for r, c in enumerate(channels):
        for j, n in enumerate(values[:, c].topk(k).indices.tolist()):
            cy = int((pos[n, c, 0] + 0.5) * size / h)
            cx = int((pos[n, c, 1] + 0.5) * size / w)
            top, left = min(max(cy - half, 0), size - patch), min(max(cx - half, 0), size - patch)
            ax = axes[r, j]
            ax.imshow(img[n, :, top : top + patch, left : left + patch].permute(1, 2, 0).clamp(0, 255).byte().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"ch {c}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_lr_find(result: dict, title: str = "Learning-rate finder"):
    """Smoothed loss against learning rate (log axis) from :func:`tlhelpers.finetune.lr_find`, suggestion marked."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(result["lrs"], result["losses"])
    ax.set_xscale("log")
    s = result["suggested"]
    ax.axvline(s, color="tab:red", linestyle="--", label=f"suggested {s:.1e}")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (smoothed)")
    lo, hi = min(result["losses"]), result["losses"][0]
    ax.set_ylim(lo - 0.1 * (hi - lo + 1e-3), max(result["losses"][: max(1, len(result["losses"]) // 2)]) * 1.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig
