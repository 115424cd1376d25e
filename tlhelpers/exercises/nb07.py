"""Self-checks for notebook 07 (your own images: learning-rate finder, uncertain predictions, the test margin)."""

from __future__ import annotations

import math
from typing import Callable

from . import report

__all__ = ["check_lr_choice", "check_unsure", "check_margin"]


def check_lr_choice(lr: float | None, result: dict) -> bool:
    """Exercise 1 (a decision): a rate where the finder's loss is still falling, below the rate of its minimum."""
    if lr is None:
        return report(False, "", "set `lr` to a number read from the plot, e.g. 1e-3.")
    lrs, losses = result["lrs"], result["losses"]
    i_min = min(range(len(losses)), key=losses.__getitem__)
    if not lrs[0] <= lr <= lrs[-1]:
        return report(False, "", f"choose a rate inside the range the finder tried ({lrs[0]:.0e} to {lrs[-1]:.0e}).")
    if lr >= lrs[i_min]:
        return report(
            False,
            "",
            f"{lr:.0e} is at or past the minimum of the curve ({lrs[i_min]:.1e}): there the loss is about to blow up. "
            "Go lower, where the curve still falls.",
        )
    # the level the curve starts from: the median of its first fifth before the minimum (at least 3 points), as
    # the first point alone is one noisy batch
    head = sorted(losses[: max(3, i_min // 5)])
    start = head[len(head) // 2]
    at = losses[min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / lr)))]
    if at > start - 0.1 * (start - losses[i_min]):
        return report(False, "", f"at {lr:.0e} the loss has hardly started to fall: training would be slow. Go higher.")
    return report(True, f"{lr:.0e}: the loss falls fast there, safely below the minimum at {lrs[i_min]:.1e}.", "")


def check_unsure(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(predictions, threshold)`` -> the top class of each, or ``"unsure"`` below ``threshold``."""
    if fn is None:
        return report(False, "", "define `label_or_unsure(predictions, threshold)`.")
    preds = [
        {"file": "a.jpg", "top": [("cat", 0.91), ("dog", 0.09)]},
        {"file": "b.jpg", "top": [("dog", 0.55), ("cat", 0.45)]},
        {"file": "c.jpg", "top": [("dog", 0.70), ("cat", 0.30)]},
    ]
    want = ["cat", "unsure", "dog"]
    try:
        got = fn(preds, 0.7)
        if got is None:
            return report(False, "", "label_or_unsure returns None: return a list, one label per prediction.")
        got = list(got)
    except Exception as e:  # the learner's code: say what went wrong, do not crash the notebook
        return report(False, "", f"label_or_unsure raised {type(e).__name__}: {e}")
    if got == want:
        return report(True, "a threshold turns a forced choice into 'I don't know' for the doubtful files.", "")
    if got == ["cat", "unsure", "unsure"]:
        return report(False, "", "a probability equal to the threshold (0.70) is confident enough: use >=.")
    return report(False, "", f"for probabilities 0.91, 0.55, 0.70 and threshold 0.7 expected {want}, got {got}.")


def check_margin(margin: float | None, acc: float, n: int) -> bool:
    """Exercise 3: the 95% margin of a test accuracy ``acc`` measured on ``n`` images (normal approximation)."""
    if margin is None:
        return report(False, "", "compute `margin` = 1.96 * sqrt(acc * (1 - acc) / n).")
    want = 1.96 * math.sqrt(acc * (1 - acc) / n)
    if math.isclose(float(margin), want, rel_tol=0.02, abs_tol=1e-4):
        return report(True, f"±{want:.1%} on {n} test images: differences smaller than this are noise.", "")
    if math.isclose(float(margin), math.sqrt(acc * (1 - acc) / n), rel_tol=0.02):
        return report(False, "", "that is one standard error: a 95% margin is 1.96 of them.")
    return report(False, "", f"expected about {want:.3f} for acc {acc:.3f} on {n} images, got {float(margin):.3f}.")
