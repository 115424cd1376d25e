"""Self-checks for notebook 07 (your own images: learning-rate finder, uncertain predictions, the test margin)."""

from __future__ import annotations

import math
from typing import Callable

from . import report

__all__ = ["check_lr_choice", "check_unsure", "check_margin"]


def check_lr_choice(lr: float | None, result: dict) -> bool:
    """Exercise 1 (a decision): a rate on the falling side of the finder's curve, below its minimum.

    A finder's curve is noisy (a few small batches per point), so the check reads it as the rule of thumb does:
    between a thirtieth and a half of the rate at the lowest loss (the finder's own suggestion is a tenth)."""
    if lr is None:
        return report(False, "", "set `lr` to a number read from the plot (written like 5e-4).")
    lrs, losses = result["lrs"], result["losses"]
    at_min = lrs[min(range(len(losses)), key=losses.__getitem__)]
    low, high = at_min / 30, at_min / 2
    if not lrs[0] <= lr <= lrs[-1]:
        return report(False, "", f"choose a rate inside the range the finder tried ({lrs[0]:.0e} to {lrs[-1]:.0e}).")
    if lr >= at_min:
        return report(
            False,
            "",
            f"{lr:.0e} is at or past the minimum of the curve ({at_min:.1e}): there the loss is about to blow up. "
            "Go lower, where the curve still falls.",
        )
    if lr > high:
        return report(
            False,
            "",
            f"{lr:.0e} is too close to the minimum ({at_min:.1e}): one noisy batch and it diverges. Go lower.",
        )
    if lr < low:
        return report(
            False,
            "",
            f"at {lr:.0e} the loss has hardly started to fall: training would be slow. Go higher "
            f"(a rate between {low:.0e} and {high:.0e}: a thirtieth to a half of the minimum's).",
        )
    return report(True, f"{lr:.0e}: on the falling side of the curve, safely below the minimum at {at_min:.1e}.", "")


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
