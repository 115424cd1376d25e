"""The self-check functions of notebooks 01 and 02 accept right answers and reject wrong ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import tlhelpers as tl
from tlhelpers.exercises import nb01, nb02
from tlhelpers.freeze import keep_frozen_bn_in_eval

# ---------------------------------------------------------------- notebook 01


@pytest.mark.parametrize("size,side", [(224, 7), (64, 2), (32, 1), (100, 4)])
def test_layer4_size(size, side, capsys):
    assert nb01.check_layer4_size(side, input_size=size)
    assert "Correct" in capsys.readouterr().out
    assert not nb01.check_layer4_size(side + 1, input_size=size)
    assert not nb01.check_layer4_size(size // 16, input_size=size)  # one halving too few
    assert "Not yet" in capsys.readouterr().out


def test_layer4_size_rejects_non_integers():
    assert not nb01.check_layer4_size("7", input_size=224)
    assert not nb01.check_layer4_size(7.5, input_size=224)


def good_probe(xtr, ytr, xte, yte):
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return clf.fit(xtr, ytr).score(xte, yte)


def cheating_probe(xtr, ytr, xte, yte):  # fits on the test set
    return good_probe(xte, yte, xte, yte)


def test_probe_function_accepts_a_fair_probe():
    assert nb01.check_probe_function(good_probe)


@pytest.mark.parametrize(
    "bad",
    [
        cheating_probe,
        lambda *a: 100 * good_probe(*a),  # a percentage, not a fraction
        lambda *a: 0.5,  # constant
        lambda xtr, ytr, xte, yte: good_probe(xtr, ytr, xtr, ytr),  # training accuracy
        lambda *a: 1 / 0,  # raises
    ],
    ids=["test-fit", "percent", "constant", "train-acc", "raises"],
)
def test_probe_function_rejects_wrong_probes(bad, capsys):
    assert not nb01.check_probe_function(bad)
    assert "Not yet" in capsys.readouterr().out


def test_probe_function_says_returned_none(capsys):
    assert not nb01.check_probe_function(lambda *a: None)  # the unfilled stub
    out = capsys.readouterr().out
    assert "returned None" in out and "raised" not in out
    assert not nb01.check_probe_function(lambda *a: "high")  # not a number: said, not raised
    assert "one number" in capsys.readouterr().out


def _window(n: int, start: int, size: int) -> np.ndarray:
    v = np.zeros(n, bool)
    v[start : start + size] = True
    return v


def test_largest_gap_follows_the_margins(capsys):
    n, half = 400, 200
    stages = ("layer1", "layer2", "layer3", "layer4")
    rnd = {s: _window(n, 0, half) for s in stages}  # random init: right on the first half
    # pretrained: right on a shifted window, so the two disagree both ways (as real probes do);
    # gains of 1, 2, 20 and 19 points on the same images
    pre = {s: _window(n, 60, half + extra) for s, extra in zip(stages, (4, 8, 80, 76))}
    pre["layer4"] = _window(n, 100, half + 76)  # disagrees with layer3 both ways: 40 vs 36 images
    assert nb01.check_largest_gap(pre, rnd, "layer3")
    assert "within noise of it: layer4" in capsys.readouterr().out
    assert nb01.check_largest_gap(pre, rnd, "layer4")  # ties with the largest gain
    assert "both are right" in capsys.readouterr().out
    for wrong in ("layer1", "layer2", "layer5", 3, None):
        assert not nb01.check_largest_gap(pre, rnd, wrong)
    # far apart: only the largest is right
    pre["layer4"] = _window(n, 100, half)
    assert nb01.check_largest_gap(pre, rnd, "layer3")
    assert "above every other stage's beyond noise" in capsys.readouterr().out
    assert not nb01.check_largest_gap(pre, rnd, "layer4")


def test_largest_gap_refuses_the_test_split():
    v = {"layer1": _window(100, 0, 60)}
    with pytest.raises(ValueError, match="test"):
        nb01.check_largest_gap(v, v, "layer1", on="test")


# ---------------------------------------------------------------- notebook 02


def test_head_params():
    assert nb02.check_head_params(5130, num_classes=10)
    assert nb02.check_head_params(1026, num_classes=2)
    assert nb02.check_head_params(nn.Linear(512, 7).weight.numel() + 7, num_classes=7)
    for wrong in (5120, 5140, 512 * 10, "5130"):
        assert not nb02.check_head_params(wrong, num_classes=10)


def _partial_model(stages=("layer3", "layer4")) -> nn.Module:
    model = torchvision.models.resnet18(weights=None)
    for name, p in model.named_parameters():
        p.requires_grad = name.split(".")[0] in stages
    model.fc = nn.Linear(model.fc.in_features, 2)
    return model


def test_partial_setup_accepts_handwritten_and_helper_versions():
    m = _partial_model()
    opt = torch.optim.Adam(
        [
            {"params": m.layer3.parameters(), "lr": 1e-5},
            {"params": m.layer4.parameters(), "lr": 1e-4},
            {"params": m.fc.parameters(), "lr": 1e-3},
        ]
    )
    assert nb02.check_partial_setup(m, opt)
    m2, _ = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    tl.unfreeze_last(m2, 3)
    opt2 = tl.make_optimizer(m2, stage_lrs={"layer3": 1e-4, "layer4": 1e-4, "fc": 1e-3})
    assert nb02.check_partial_setup(m2, opt2)


def test_partial_setup_rejects_mistakes(capsys):
    m = _partial_model(("layer4",))
    opt = torch.optim.Adam([{"params": m.layer4.parameters(), "lr": 1e-4}, {"params": m.fc.parameters(), "lr": 1e-3}])
    assert not nb02.check_partial_setup(m, opt)  # layer3 left frozen
    m = _partial_model()
    assert not nb02.check_partial_setup(m, torch.optim.Adam(m.parameters(), lr=1e-4))  # frozen params in optimizer
    assert not nb02.check_partial_setup(
        m, torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    )  # one lr
    assert not nb02.check_partial_setup(
        m,
        torch.optim.Adam(
            [  # head slower than backbone
                {"params": list(m.layer3.parameters()) + list(m.layer4.parameters()), "lr": 1e-3},
                {"params": m.fc.parameters(), "lr": 1e-4},
            ]
        ),
    )
    assert not nb02.check_partial_setup(
        m,
        torch.optim.Adam(
            [  # head params missing
                {"params": list(m.layer3.parameters()) + list(m.layer4.parameters()), "lr": 1e-4}
            ]
        ),
    )
    m.layer3[0].bn1.weight.requires_grad = False
    assert not nb02.check_partial_setup(
        m,
        torch.optim.Adam(
            [  # layer3 only partly trainable
                {
                    "params": [p for p in m.layer3.parameters() if p.requires_grad] + list(m.layer4.parameters()),
                    "lr": 1e-4,
                },
                {"params": m.fc.parameters(), "lr": 1e-3},
            ]
        ),
    )
    m = _partial_model()
    m.fc = nn.Linear(512, 10)
    assert not nb02.check_partial_setup(
        m,
        torch.optim.Adam(
            [  # wrong number of classes
                {"params": list(m.layer3.parameters()) + list(m.layer4.parameters()), "lr": 1e-4},
                {"params": m.fc.parameters(), "lr": 1e-3},
            ]
        ),
    )
    assert capsys.readouterr().out.count("Not yet") == 7


def _measured_adam_bytes(model: nn.Module) -> int:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    return sum(t.nbytes for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


@pytest.mark.parametrize("stages", [("fc",), ("layer4", "fc")])
def test_adam_state_bytes_matches_a_real_optimizer(stages):
    model = _partial_model(stages)
    measured = _measured_adam_bytes(model)
    assert nb02.check_adam_state_bytes(measured, model)  # with the step counters
    trainable = tl.count_params(model)[0]
    assert nb02.check_adam_state_bytes(8 * trainable, model)
    assert not nb02.check_adam_state_bytes(4 * trainable, model)  # one buffer only
    assert not nb02.check_adam_state_bytes(8 * tl.count_params(model)[1], model)  # frozen ones too
    assert not nb02.check_adam_state_bytes(2 * trainable, model)  # buffers counted in numbers, not bytes


def test_bn_fix():
    def right(model):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and not m.weight.requires_grad:
                m.eval()

    assert nb02.check_bn_fix(right)
    assert nb02.check_bn_fix(keep_frozen_bn_in_eval)  # the package's own fix
    assert not nb02.check_bn_fix(lambda model: None)  # the pitfall itself
    assert not nb02.check_bn_fix(lambda model: model.eval())  # also stops layer4's statistics
    assert not nb02.check_bn_fix(lambda model: model.layer1.eval())  # only part of the frozen stages
    assert not nb02.check_bn_fix(lambda model: model.nonexistent())  # raises


def _scores(accs: dict, n: int, seed: int = 0) -> dict:
    """Correctness vectors on the same n images with exactly the given accuracies (independent errors)."""
    rng = np.random.default_rng(seed)
    return {key: rng.permutation(np.arange(n) < round(a * n)) for key, a in accs.items()}


def test_nb01_stage_choice_accepts_stages_within_noise(capsys):
    correct = _scores({"layer1": 0.55, "layer2": 0.60, "layer3": 0.68, "layer4": 0.70}, n=400)
    assert nb01.check_stage_choice("layer3", correct)  # ties with layer4 and is earlier: the rule's choice
    assert "comes first" in capsys.readouterr().out
    assert nb01.check_stage_choice("layer4", correct)  # the best: right, and the verdict names the tie
    assert "the course's rule takes layer3; within noise both are right" in capsys.readouterr().out
    assert not nb01.check_stage_choice("layer1", correct)
    assert "is worse than layer4" in capsys.readouterr().out
    assert not nb01.check_stage_choice("layer2", correct)  # 10 points below on 400 images: beyond noise
    big = _scores({"layer1": 0.55, "layer2": 0.60, "layer3": 0.68, "layer4": 0.70}, n=20000)
    assert not nb01.check_stage_choice("layer3", big)  # on 20,000 images 2 points is no longer a tie
    small = _scores({"layer1": 0.55, "layer2": 0.60, "layer3": 0.68, "layer4": 0.70}, n=40)
    assert nb01.check_stage_choice("layer1", small)  # on 40 images even layer1 ties
    assert not nb01.check_stage_choice(None, correct)
    assert not nb01.check_stage_choice("fc", correct)
    with pytest.raises(ValueError, match="validation split"):
        nb01.check_stage_choice("layer3", correct, on="test")


def test_rate_choice(capsys):
    target = _scores({1e-5: 0.645, 1e-4: 0.680, 1e-3: 0.650, 1e-2: 0.530}, n=2000)
    source = {1e-5: 0.874, 1e-4: 0.811, 1e-3: 0.162, 1e-2: 0.123}
    forgetting = {lr: (target[lr], source[lr]) for lr in target}
    assert nb02.check_rate_choice(1e-4, forgetting, before=0.897)  # 1e-5 and 1e-4 keep within 10 points
    assert not nb02.check_rate_choice(1e-5, forgetting, before=0.897)  # allowed, but 3.5 points worse on 2,000
    assert "is worse than" in capsys.readouterr().out
    assert not nb02.check_rate_choice(1e-3, forgetting, before=0.897)  # forgets
    assert nb02.check_rate_choice(1e-5, forgetting, before=0.924, max_loss=0.06)  # only 1e-5 is allowed
    few = {lr: (t, source[lr]) for lr, t in _scores({1e-5: 0.645, 1e-4: 0.680, 1e-3: 0.65}, n=200).items()}
    assert nb02.check_rate_choice(1e-5, few, before=0.897)  # on 200 images 3.5 points is a tie: right, and said
    assert "ties with the best" in capsys.readouterr().out
    assert not nb02.check_rate_choice(3e-4, forgetting, before=0.9) and not nb02.check_rate_choice(
        None, forgetting, 0.9
    )
