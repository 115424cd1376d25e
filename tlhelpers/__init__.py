"""tlhelpers: the small support package of the transfer-learning course.

One module per concept: ``device``, ``data`` (with ``decode``, ``batch``, ``archive``), ``models``, ``freeze``,
``recipe``, ``train``, ``embed``, ``viz``, ``augment``, ``finetune``, ``saving``, ``simulator``, ``strategy``,
``stats`` (noise: compare, choose), ``widgets``, ``pretrain``
(the offline course backbone)
and ``cli`` (``python -m tlhelpers doctor | prefetch | bundle | pretrain``).
"""

__version__ = "0.1.0"

from .augment import augmenter, color_jitter, random_flip, random_resized_crop
from .batch import prepare_batch
from .data import (
    CIFAR10_CLASSES,
    ImageTensors,
    load_cifar_pair,
    load_cifar_split,
    load_digits_task,
    load_image_folder,
    make_loader,
    train_val_split,
)
from .device import autocast, get_device, loader_kwargs
from .embed import embed, extract_embedding, nearest_neighbors, stage_features, stage_peaks
from .finetune import fine_tune, lr_find
from .freeze import (
    count_params,
    freeze,
    make_optimizer,
    param_groups,
    set_trainable,
    stage_names,
    stage_table,
    trainable_stages,
    trainable_summary,
    unfreeze,
    unfreeze_last,
)
from .models import WeightsUnavailable, course_backbone_info, load_backbone, load_checkpoint, replace_head
from .recipe import RECIPES, Recipe, epochs_for, recipe, train_batch_size
from .saving import load_model, save_model
from .simulator import train_step
from .strategy import recommend_strategy
from .train import best_epoch, evaluate, fit, fit_head, predict, predict_files, quick_mode, set_seed

__all__ = [
    "CIFAR10_CLASSES",
    "ImageTensors",
    "load_cifar_pair",
    "load_cifar_split",
    "load_digits_task",
    "load_image_folder",
    "make_loader",
    "prepare_batch",
    "random_flip",
    "train_val_split",
    "RECIPES",
    "Recipe",
    "epochs_for",
    "recipe",
    "train_batch_size",
    "best_epoch",
    "autocast",
    "get_device",
    "loader_kwargs",
    "embed",
    "extract_embedding",
    "nearest_neighbors",
    "stage_features",
    "stage_peaks",
    "count_params",
    "freeze",
    "make_optimizer",
    "param_groups",
    "set_trainable",
    "stage_names",
    "stage_table",
    "trainable_stages",
    "trainable_summary",
    "unfreeze",
    "unfreeze_last",
    "WeightsUnavailable",
    "course_backbone_info",
    "load_backbone",
    "load_checkpoint",
    "replace_head",
    "recommend_strategy",
    "train_step",
    "evaluate",
    "fit",
    "fit_head",
    "predict",
    "predict_files",
    "augmenter",
    "color_jitter",
    "random_resized_crop",
    "fine_tune",
    "lr_find",
    "load_model",
    "save_model",
    "quick_mode",
    "set_seed",
]


def __getattr__(name: str):
    """``tl.viz``, ``tl.widgets``, ``tl.pretrain``, ``tl.cli``, ``tl.exercises``, ``tl.stats`` load on first use, so
    ``import tlhelpers`` stays light (no matplotlib, ipywidgets or scipy until a plot, widget or verdict is needed)."""
    if name in ("viz", "widgets", "pretrain", "cli", "exercises", "stats"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
