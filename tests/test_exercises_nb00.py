"""The self-check functions of notebook 00 accept right answers and reject wrong ones."""

from __future__ import annotations

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
