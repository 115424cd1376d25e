"""Notebook 07's self-checks accept the solutions and reject the usual mistakes."""

from __future__ import annotations

import math

import numpy as np

from tlhelpers.exercises.nb07 import check_lr_choice, check_margin, check_unsure

LRS = list(np.geomspace(1e-6, 1, 61))
# flat, then falling from 1e-4 to its minimum at 1e-2, then blowing up
LOSSES = [
    0.7 if lr < 1e-4 else 0.7 - 0.4 * (math.log10(lr) + 4) / 2 if lr <= 1e-2 else 0.3 + 5 * (lr - 1e-2) for lr in LRS
]
FINDER = {"lrs": LRS, "losses": LOSSES, "suggested": 1e-3}


def test_lr_choice(capsys):
    assert check_lr_choice(FINDER["suggested"], FINDER)
    assert check_lr_choice(3e-3, FINDER)
    assert not check_lr_choice(None, FINDER)
    assert not check_lr_choice(0.1, FINDER) and "past the minimum" in capsys.readouterr().out
    assert not check_lr_choice(1e-5, FINDER) and "hardly started to fall" in capsys.readouterr().out
    assert not check_lr_choice(8e-3, FINDER) and "too close to the minimum" in capsys.readouterr().out
    assert not check_lr_choice(10.0, FINDER) and "inside the range" in capsys.readouterr().out


# notebook 07's finder in quick mode (76 images, Lite0): the first point, one batch, lies below the plateau
NOISY = {
    "lrs": list(np.geomspace(1e-6, 0.17, 35)),
    "losses": [
        0.61,
        0.80,
        0.76,
        0.79,
        0.81,
        0.73,
        0.76,
        0.77,
        0.75,
        0.75,
        0.75,
        0.74,
        0.76,
        0.77,
        0.79,
        0.72,
        0.73,
        0.71,
        0.72,
        0.75,
        0.73,
        0.70,
        0.69,
        0.68,
        0.63,
        0.60,
        0.57,
        0.57,
        0.49,
        0.47,
        0.42,
        0.52,
        0.66,
        0.67,
        1.93,
    ],
}


def test_lr_choice_reads_the_plateau_not_the_first_batch(capsys):
    i_min = int(np.argmin(NOISY["losses"]))
    assert check_lr_choice(NOISY["lrs"][i_min] / 10, NOISY)  # the finder's own suggestion passes
    assert not check_lr_choice(1e-5, NOISY) and "hardly started" in capsys.readouterr().out
    assert not check_lr_choice(NOISY["lrs"][i_min], NOISY) and "past the minimum" in capsys.readouterr().out
    # a dip in the flat, noisy start of the curve is not "falling": a level test would have passed it
    assert not check_lr_choice(1e-6 * 1.4**5, NOISY) and "hardly started" in capsys.readouterr().out


def test_unsure(capsys):
    def solution(predictions, threshold):
        return [p["top"][0][0] if p["top"][0][1] >= threshold else "unsure" for p in predictions]

    assert check_unsure(solution)
    assert not check_unsure(lambda p, t: [x["top"][0][0] if x["top"][0][1] > t else "unsure" for x in p])
    assert "use >=" in capsys.readouterr().out
    assert not check_unsure(lambda p, t: None) and "returns None" in capsys.readouterr().out
    assert not check_unsure(lambda p, t: 1 / 0) and "ZeroDivisionError" in capsys.readouterr().out


def test_margin(capsys):
    assert check_margin(1.96 * math.sqrt(0.9 * 0.1 / 120), 0.9, 120)
    assert not check_margin(math.sqrt(0.9 * 0.1 / 120), 0.9, 120) and "one standard error" in capsys.readouterr().out
    assert not check_margin(None, 0.9, 120)
    assert not check_margin(0.2, 0.9, 120)
