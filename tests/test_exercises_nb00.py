"""The self-check functions of notebook 00 accept right answers and reject wrong ones."""

from __future__ import annotations

import pytest
import torch

import tlhelpers as tl
from tlhelpers.exercises import nb00


def test_logits_shape(capsys):
    assert nb00.check_logits_shape((8, 10))
    assert nb00.check_logits_shape(torch.Size([8, 10]))
    assert nb00.check_logits_shape([3, 4], batch=3, num_classes=4)
    assert "Correct" in capsys.readouterr().out
    for wrong in [(10, 8), (8,), "8x10", None, (8, 10, 1)]:
        assert not nb00.check_logits_shape(wrong)
    assert "Not yet" in capsys.readouterr().out


def test_weights_name(capsys):
    course, _ = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    assert nb00.check_weights_name("course", course)
    assert nb00.check_weights_name(" Course ", course)
    assert not nb00.check_weights_name("imagenet", course)
    other, _ = tl.load_backbone("resnet18", weights="random", verbose=False)  # stands in for any other weights
    assert nb00.check_weights_name("imagenet", other)
    assert not nb00.check_weights_name("course", other)
    assert not nb00.check_weights_name(None, course)


def test_better_than_chance_follows_the_margin(capsys):
    # 200 images: the 95% band around 50% is 50 +- 6.9 points
    assert nb00.check_better_than_chance("can't tell", 0.53, 200)
    assert nb00.check_better_than_chance("cannot tell", 0.45, 200)
    assert not nb00.check_better_than_chance("better", 0.53, 200)
    assert nb00.check_better_than_chance("better", 0.60, 200)
    assert not nb00.check_better_than_chance("can't tell", 0.60, 200)
    assert nb00.check_better_than_chance("Worse", 0.40, 200)
    # the same 53% on 2,000 images is outside the narrower band (+- 2.2 points)
    assert nb00.check_better_than_chance("better", 0.53, 2000)
    assert "Correct" in capsys.readouterr().out
    for wrong in ("", None, "maybe", 1):
        assert not nb00.check_better_than_chance(wrong, 0.5, 200)
    assert 'answer "better", "worse"' in capsys.readouterr().out


@pytest.mark.parametrize("n", [50, 200, 1000])
def test_better_than_chance_is_the_coins_band(n, capsys):
    """The Wilson interval leaves out 50% exactly when the score is outside 50% +- 1.96 sqrt(0.25 / n)."""
    band = 1.96 * (0.25 / n) ** 0.5
    for k in range(n + 1):
        acc = k / n
        if abs(abs(acc - 0.5) - band) < 1e-3:
            continue  # on the edge, rounding decides
        by_band = "better" if acc > 0.5 + band else "worse" if acc < 0.5 - band else "can't tell"
        assert nb00.check_better_than_chance(by_band, acc, n), (k, n)
    capsys.readouterr()
