"""Device selection and DataLoader settings that are safe everywhere (scripts and Jupyter)."""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys

import torch

from . import settings

__all__ = [
    "get_device",
    "loader_kwargs",
    "model_device",
    "native_bf16",
    "fast_cpu_autocast",
    "autocast",
    "reuse_freed_memory",
    "optimizer_options",
]


def get_device(prefer: str | None = None, verbose: bool = True) -> torch.device:
    """Pick CUDA, then Apple MPS, then CPU (or ``prefer`` / $TLHELPERS_DEVICE) and say which in one line.

    ``prefer`` and $TLHELPERS_DEVICE are case-insensitive (``CPU`` works); an unknown or unavailable device
    raises an error that names where the request came from and the remedy.
    """
    from_env = not prefer
    prefer = settings.device() if from_env else prefer.strip().lower()  # settings validates the variable
    source = "$TLHELPERS_DEVICE" if from_env else "the prefer argument"
    if prefer:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise ValueError(f"get_device(prefer={prefer!r}): not a device: use cpu, cuda, cuda:N or mps.") from None
        mps = getattr(torch.backends, "mps", None)
        if (device.type == "cuda" and not torch.cuda.is_available()) or (
            device.type == "mps" and not (mps is not None and mps.is_available())
        ):
            what = "no CUDA GPU" if device.type == "cuda" else "no Apple GPU (MPS)"
            fix = "unset TLHELPERS_DEVICE or set it to cpu" if from_env else "use 'cpu' or leave the argument out"
            raise RuntimeError(
                f"Device {prefer!r} was asked for ({source}), but this machine has {what}, so it is not available "
                f"here: {fix}."
            )
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        elif device.type == "mps":
            name = "Apple GPU (Metal)"
        else:
            name = f"{torch.get_num_threads()} CPU threads"
        print(f"Using device: {device.type} ({name})")
    return device


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def loader_kwargs(device: torch.device | str = "cpu", num_workers: int | None = None) -> dict:
    """Keyword arguments for ``DataLoader`` that never crash inside Jupyter.

    Inside a notebook, worker processes are only used where they are started by ``fork`` (Linux
    up to Python 3.13); with ``spawn`` or ``forkserver`` (macOS, Windows, Linux from Python 3.14)
    they cannot import the notebook's code and crash, so there we load in the main process.
    ``pin_memory`` only helps CUDA.
    """
    device = torch.device(device)
    if num_workers is None:
        # unset: the platform default, listed first (fork on Linux up to Python 3.13, forkserver from 3.14)
        method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
        spawn = method != "fork" or sys.platform != "linux"
        num_workers = 0 if (spawn and _in_notebook()) else min(4, os.cpu_count() or 1) // 2
    kw = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kw["persistent_workers"] = True
    return kw


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@functools.cache
def fast_cpu_autocast() -> bool:
    """True if this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX); /proc/cpuinfo is read once."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    """True where bfloat16 runs natively: CUDA GPUs from Ampere on (not emulated, as on a T4 or V100), fast CPUs."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and fast_cpu_autocast()


def autocast(device: torch.device | str, enabled: bool = True):
    """bfloat16 autocast on CUDA GPUs or CPUs with native bf16; a no-op context elsewhere."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and native_bf16(device))


def optimizer_options(device: torch.device | str, name: str = "adam") -> dict:
    """Extra keyword arguments for ``name``'s optimizer on ``device``: ``fused=True`` for Adam/AdamW on the CPU.

    The fused CPU kernel updates all parameters in one pass instead of several small ops per tensor; the
    result is the same up to rounding (docs/performance.md, "Fine-tuning against fastai": 1.3x faster
    optimizer steps measured there, identical predictions). CUDA and MPS keep PyTorch's own default.
    """
    if torch.device(device).type != "cpu" or name.lower() not in ("adam", "adamw"):
        return {}
    try:  # PyTorch >= 2.4 has the CPU kernel; it lists where fused kernels exist
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        return {"fused": True} if "cpu" in _get_fused_kernels_supported_devices() else {}
    except ImportError:
        return {}


_MALLOC_TUNED: bool | None = None


def reuse_freed_memory(trim_mb: int = 128) -> bool:
    """Opt-in, for one long CPU job: let glibc's malloc keep freed memory for reuse (for the whole process).

    A forward pass on the CPU allocates and frees the same large activation buffers for every batch. By
    default glibc returns blocks that large to the operating system and takes them back page by page at
    the next batch: about a million page faults to embed 1,200 images at 224 px. With this setting (heap
    blocks up to 32 MB, up to ``trim_mb`` MB kept free at the top of the heap) ``embed`` ran faster there at
    the same peak memory; elsewhere its memory cost is not established (docs/performance.md). So nothing in
    tlhelpers changes the allocator behind your back; the performance benchmark's course workflow calls
    this. Linux (glibc) only; TLHELPERS_MALLOC_TUNE=0 makes it a no-op. Returns whether it is in effect.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = False
        if sys.platform.startswith("linux") and settings.malloc_tune():
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
                # Blocks up to 32 MB (glibc's own upper limit) come from the heap, not from fresh mmaps ...
                # ... and up to trim_mb of free memory at the top of the heap is kept for the next batch.
                _MALLOC_TUNED = bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
                    libc.mallopt(m_trim_threshold, trim_mb << 20)
                )
            except (OSError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
                pass
    return _MALLOC_TUNED
