"""Matplotlib plots for the course: learning curves, image grids, confusion matrix, embeddings, filters, and
the figures of the simulator (one training step) and the strategy guide (the flowchart)."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import NullFormatter

from .recipe import STRATEGY_COLORS
from .simulator import StepReport
from .strategy import LARGE, SMALL, Recommendation, recommend_strategy, size_band

__all__ = [
    "COLUMN_WIDTH",
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
    "draw_step",
    "draw_flowchart",
    "draw_body_and_head",
]

# Figure width in inches that shows at natural size in the website's text column (about 720 CSS px;
# figures are drawn at 100 dpi): a label of 8 pt then reads at 11 px. Wider figures are shrunk to the
# column, and their labels with them (tests/e2e/test_site.py checks the smallest text on every page).
COLUMN_WIDTH = 7.0

# the simulator's figure: frozen stages blue, trainable green, gradients red
BLUE, GREEN, RED, GREY = "#1f77b4", "#2ca02c", "#d62728", "#7f7f7f"


def _hwc(img: torch.Tensor) -> np.ndarray:
    """A (3, H, W) uint8 or [0, 1] float tensor as an (H, W, 3) array for imshow."""
    img = torch.as_tensor(img).detach().cpu()
    if img.is_floating_point():
        img = img.clamp(0, 1)
    return img.permute(1, 2, 0).numpy()


def plot_history(history: Sequence[dict] | dict[str, Sequence[dict]], title: str = "Learning curves"):
    """Loss and accuracy per epoch (train and, if present, validation); several runs as a dict of histories."""
    runs = history if isinstance(history, dict) else {"": history}
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH, 3.4), layout="constrained")
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
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
    handles, labels = ax_l.get_legend_handles_labels()  # the same lines in both panels
    # below the panels, never over a curve
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8)
    fig.suptitle(title)
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
    size = min(size, COLUMN_WIDTH / ncols)
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
    k = len(classes)
    fig, ax = plt.subplots(figsize=(min(COLUMN_WIDTH, 1.2 + 0.7 * k), min(COLUMN_WIDTH * 0.9, 1 + 0.6 * k)))
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
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH * 0.75, 4.4))
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(pts[m, 0], pts[m, 1], s=8, alpha=0.6, label=classes[c] if classes is not None else str(c))
    # outside the axes, on the right: a legend inside would hide points
    ax.legend(markerscale=2, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set(title=title or f"{method.upper()} of {x.shape[1]}-d embeddings", xticks=[], yticks=[])
    return pts


def show_filters(weight: torch.Tensor, ncols: int = 16, title: str = "First-layer filters"):
    """The filters of the first conv layer (out, 3, k, k) as small RGB images, each scaled to [0, 1]."""
    w = weight.detach().float().cpu()
    lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo + 1e-8)
    nrows = -(-len(w) // ncols)
    cell = min(0.6, COLUMN_WIDTH / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell, nrows * cell + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, f in enumerate(w):
        axes.flat[i].imshow(_hwc(f), interpolation="nearest")
    fig.suptitle(title)
    return fig


def show_feature_maps(maps: dict[str, torch.Tensor], n: int = 8, image: torch.Tensor | None = None):
    """The first ``n`` channels of each stage's feature maps for one image (``{stage: C x H x W}``)."""
    rows = len(maps) + (image is not None)
    cell = min(1.1, COLUMN_WIDTH / n)
    fig, axes = plt.subplots(rows, n, figsize=(n * cell, rows * (cell + 0.15)), squeeze=False)
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
    cell = min(1.6, COLUMN_WIDTH / (k + 1))
    fig, axes = plt.subplots(1, k + 1, figsize=(cell * (k + 1), cell + 0.45), squeeze=False)
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
    cell = min(0.9, COLUMN_WIDTH / k)
    fig, axes = plt.subplots(len(channels), k, figsize=(k * cell, len(channels) * (cell + 0.05)), squeeze=False)
    for r, c in enumerate(channels):
        for j, n in enumerate(values[:, c].topk(k).indices.tolist()):
            cy = int((pos[n, c, 0] + 0.5) * size / h)
            cx = int((pos[n, c, 1] + 0.5) * size / w)
            top, left = min(max(cy - half, 0), size - patch), min(max(cx - half, 0), size - patch)
            ax = axes[r, j]
            ax.imshow(img[n, :, top : top + patch, left : left + patch].permute(1, 2, 0).clamp(0, 255).byte().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"ch {c}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_lr_find(result: dict, title: str = "Learning-rate finder"):
    """Smoothed loss against learning rate (log axis) from :func:`tlhelpers.finetune.lr_find`, suggestion marked."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * 0.85, 3.5))
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


def draw_step(r: StepReport, title: str | None = None):
    """The network as a row of stages (frozen blue, trainable green) with the backward pass of one step.

    Top: the red arrow is the backward pass, from the loss to the earliest stage it reaches; a red
    dot marks each stage whose *weights* received a gradient. Bottom: the weight gradient's per-parameter RMS
    (root mean square, log scale), which compares stages of 1 k and 8 M parameters fairly; frozen stages have
    none, even when the backward signal passes through them.
    """
    n = len(r.stages)
    fig, (top, bot) = plt.subplots(2, 1, figsize=(8.5, 4.6), gridspec_kw={"height_ratios": [1.15, 1]})
    top.set_xlim(-0.9, n + 0.1)
    top.set_ylim(-0.75, 1.05)
    top.axis("off")
    for i, s in enumerate(r.stages):
        color = GREEN if r.trainable[s] else BLUE
        top.add_patch(
            FancyBboxPatch((i - 0.4, 0.2), 0.8, 0.6, boxstyle="round,pad=0.02", fc=color, ec="none", alpha=0.85)
        )
        top.text(i, 0.62, s, ha="center", va="center", color="white", fontsize=10, fontweight="bold")
        top.text(
            i, 0.38, "trainable" if r.trainable[s] else "frozen", ha="center", va="center", color="white", fontsize=8
        )
        if r.receives_gradient(s):
            top.scatter([i + 0.3], [0.75], s=110, color=RED, zorder=4, edgecolors="white")
        top.text(
            i,
            -0.62,
            f"{r.changed[s]}/{r.n_tensors[s]} tensors\nchanged",
            ha="center",
            fontsize=8,
            color=RED if r.changed[s] else GREY,
        )
    top.text(-0.75, 0.5, "input", ha="center", va="center", fontsize=9)
    top.annotate("", xy=(-0.42, 0.5), xytext=(-0.6, 0.5), arrowprops=dict(arrowstyle="->", color=GREY))
    top.text(n - 0.35, 0.5, "loss", ha="center", va="center", fontsize=9)
    reached = [i for i, s in enumerate(r.stages) if r.passes_signal(s)]
    if reached:
        start = min(reached)
        top.add_patch(
            FancyArrowPatch((n - 0.35, 0.02), (start - 0.4, 0.02), arrowstyle="-|>", mutation_scale=14, color=RED, lw=2)
        )
        top.text(
            (n - 0.35 + start - 0.4) / 2, -0.22, "backward pass (gradient signal)", ha="center", color=RED, fontsize=8
        )
        if start > 0:
            top.text(start - 0.5, 0.02, "stops", ha="right", va="center", color=RED, fontsize=8)
    else:
        top.text(n / 2 - 0.5, -0.1, "no backward pass: nothing is trainable", ha="center", color=GREY, fontsize=9)
    norms = [r.grad_rms[s] for s in r.stages]
    xs = range(n)
    bot.bar(xs, [g if g > 0 else float("nan") for g in norms], color=RED, width=0.5)
    bot.set_yscale("log")
    pos = [g for g in norms if g > 0]
    floor = 10.0 ** (math.floor(math.log10(min(pos))) - 1) if pos else 0.1
    bot.set_ylim(floor, 10.0 ** (math.ceil(math.log10(max(pos))) + 0.3) if pos else 10)
    bot.yaxis.set_minor_formatter(NullFormatter())
    for i, g in enumerate(norms):
        bot.text(
            i,
            g * 1.15 if g > 0 else floor * 1.3,
            f"{g:.2g}" if g > 0 else "no weight\ngradient",
            ha="center",
            va="bottom",
            fontsize=8,
            color="black" if g > 0 else GREY,
        )
    bot.set_xticks(list(xs), r.stages)
    bot.set_xlim(-0.9, n + 0.1)
    bot.set_ylabel("weight gradient,\nRMS per parameter (log)", fontsize=8)
    bot.grid(axis="y", alpha=0.3)
    fig.suptitle(
        title
        or (
            f"One training step: loss {r.loss:.3f}, {r.trainable_params:,} trainable parameters, "
            f"{r.seconds * 1000:.0f} ms"
        ),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def draw_flowchart(highlight: Recommendation | None = None, ax=None):
    """Draw the flowchart (size -> domain -> strategy -> limited-budget step-down) from :func:`recommend_strategy`.

    Every leaf is computed by calling the function, so the drawing cannot disagree with it.
    ``highlight``: a recommendation whose path is drawn bold (the others fade). Returns the figure.
    """
    fig = ax.figure if ax is not None else plt.figure(figsize=(9, 5.6))
    ax = ax or fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-0.9, 12)
    ax.set_ylim(-0.3, 5.3)
    ax.axis("off")
    sizes = [
        ("small", f"< {SMALL:,} images", SMALL // 2),
        ("medium", f"{SMALL:,} to {LARGE:,}", (SMALL + LARGE) // 2),
        ("large", f"> {LARGE:,} images", LARGE * 5),
    ]
    sel = None
    if highlight is not None:
        sel = (size_band(highlight.n_images), highlight.similarity, highlight.budget)

    def box(x, y, text, color="#444444", on=True, fill=False, w=None, size=9):
        alpha = 1.0 if on else 0.25
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=size,
            color="white" if fill else color,
            alpha=alpha,
            fontweight="bold" if (on and sel) else "normal",
            zorder=3,
            bbox=dict(
                boxstyle="round,pad=0.35",
                fc=color if fill else "white",
                ec=color,
                alpha=alpha,
                lw=2.2 if (on and sel) else 1.0,
            ),
        )

    def arrow(x0, y0, x1, y1, on=True, label=None):
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            zorder=1,
            arrowprops=dict(arrowstyle="-|>", color="#333333", alpha=1.0 if on else 0.2, lw=2 if (on and sel) else 1),
        )
        if label:
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                label,
                ha="center",
                va="center",
                fontsize=8,
                alpha=1.0 if on else 0.3,
                bbox=dict(fc="white", ec="none", pad=0.5),
                zorder=2,
            )

    box(6, 5.0, "1. How many labelled training images?", on=True)
    ys, yd, yb = 3.9, 2.35, 0.25
    for i, (band, label, n) in enumerate(sizes):
        xs = 2 + 4 * i
        on_s = sel is None or sel[0] == band
        arrow(6, 4.78, xs, ys + 0.22, on_s)
        box(xs, ys, f"{band}\n{label}", on=on_s)
        for j, sim in enumerate(("similar", "different")):
            xd = xs - 1 + 2 * j
            on_d = sel is None or sel[:2] == (band, sim)
            arrow(xs, ys - 0.3, xd, yd + 0.3, on_d, label=f"2. {sim}\ndomain")
            ample, limited = recommend_strategy(n, sim, "ample"), recommend_strategy(n, sim, "limited")
            on_a = sel is None or sel == (band, sim, "ample")
            on_l = sel is None or sel == (band, sim, "limited")
            box(
                xd,
                yd,
                ample.strategy.replace(" ", "\n"),
                color=STRATEGY_COLORS[ample.strategy],
                fill=True,
                on=on_a or on_l,
            )
            scen = ample.scenario.split(":")[0] if ample.scenario.startswith("scenario") else "medium band"
            ax.text(xd, yd - 0.55, scen, ha="center", fontsize=8, color="#555555", alpha=1.0 if (on_a or on_l) else 0.3)
            arrow(xd, yd - 0.7, xd, yb + 0.35, on_l, label="3. if compute\nis limited")
            box(xd, yb, limited.strategy.replace(" ", "\n"), color=STRATEGY_COLORS[limited.strategy], on=on_l, size=8)
    ax.text(-0.85, yd, "ample\ncompute:", fontsize=8.5, va="center", color="#333333")
    ax.text(-0.85, yb, "limited\ncompute:", fontsize=8.5, va="center", color="#333333")
    return fig


def draw_body_and_head(
    classes: Sequence[str] = ("cat", "dog"), source_head: tuple[int, int] = (512, 1000), source: str = "ImageNet"
):
    """Draw transfer learning's idea: ResNet18's pretrained body (stem, 4 stages, pooling) kept, frozen, and its
    ``source`` head, ``Linear(*source_head)`` (in features, classes), crossed out and replaced by a new, trainable
    head for ``classes``. Pass the loaded model's head, e.g. ``(fc.in_features, fc.out_features)``.

    Column width, text >= 8 pt. Returns the figure.
    """
    features, n_source = source_head
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.7))
    fig.subplots_adjust(0, 0, 1, 1)
    ax.set_xlim(0, 14)
    ax.set_ylim(0.5, 5.8)
    ax.axis("off")

    def box(x, y, w, h, text, color, fill=0.18, size=8, ls="-"):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=color, ec=color, alpha=fill, lw=0))
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc="none", ec=color, lw=1.2, ls=ls))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(x0, y0, x1, y1, color="#333333"):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, color=color, lw=1))

    y, h = 2.3, 1.3
    body = [
        ("stem\n7×7 conv", 1.15),
        ("stage 1\n64 ch", 1.15),
        ("stage 2\n128 ch", 1.15),
        ("stage 3\n256 ch", 1.15),
        ("stage 4\n512 ch", 1.15),
        ("global\npool", 1.0),
    ]
    box(0.1, y, 0.9, h, "image", GREY, fill=0.08)
    x = 1.3
    arrow(1.04, y + h / 2, x - 0.06, y + h / 2)
    for i, (text, w) in enumerate(body):
        box(x, y, w, h, text, BLUE)
        if i < len(body) - 1:
            arrow(x + w + 0.05, y + h / 2, x + w + 0.25, y + h / 2)
        x += w + 0.3
    x_end = x - 0.3
    ax.annotate(
        "",
        xy=(1.3, 1.85),
        xytext=(x_end, 1.85),
        arrowprops=dict(arrowstyle="-", color=BLUE, lw=1.5),
    )
    ax.text(
        (1.3 + x_end) / 2,
        1.45,
        "pretrained body: kept, frozen (its features are reused)",
        ha="center",
        va="center",
        fontsize=9,
        color=BLUE,
    )
    ax.text(
        (1.3 + x_end) / 2,
        1.0,
        f"{features} numbers per image come out of the pool",
        ha="center",
        va="center",
        fontsize=8,
        color="#333333",
    )

    # old head, crossed out; new head, trainable
    hx, hw, hh = x_end + 0.45, 14 - x_end - 0.55, 1.0
    old_y, new_y = 3.75, 1.15
    box(hx, old_y, hw, hh, f"{source} head\nLinear {features} → {n_source}", GREY, fill=0.08, ls="--")
    for ys in ((old_y, old_y + hh), (old_y + hh, old_y)):
        ax.plot([hx, hx + hw], ys, color=RED, lw=1.5, alpha=0.8)
    dropped = f"its {n_source} classes: dropped"
    ax.text(hx + hw / 2, old_y - 0.3, dropped, ha="center", va="center", fontsize=8, color=RED)
    label = ", ".join(classes) if len(classes) <= 3 else f"{len(classes)} classes"
    box(hx, new_y, hw, hh, f"new head\nLinear {features} → {len(classes)}", GREEN, fill=0.25)
    ax.text(hx + hw / 2, new_y - 0.3, f"new, trainable: {label}", ha="center", va="center", fontsize=8, color=GREEN)
    arrow(x_end + 0.05, y + h / 2, hx - 0.05, old_y + hh / 2, color=GREY)
    arrow(x_end + 0.05, y + h / 2, hx - 0.05, new_y + hh / 2, color=GREEN)
    ax.text(
        0.1,
        5.45,
        "Transfer learning: keep the pretrained body, replace the head",
        fontsize=10,
        fontweight="bold",
        va="center",
    )
    return fig
