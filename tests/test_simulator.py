"""The fine-tuning simulator's step: gradients reach exactly the trainable stages, frozen tensors stay bit-identical."""

import copy

import pytest
import torch

import tlhelpers as tl
from tlhelpers.simulator import train_step

STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]


def _block(cin: int, cout: int) -> int:
    """Closed-form parameter count of a ResNet BasicBlock (two 3x3 convs without bias, two BNs, 1x1 downsample)."""
    n = 9 * cin * cout + 9 * cout * cout + 2 * 2 * cout
    return n + (cin * cout + 2 * cout if cin != cout else 0)


CLOSED_FORM = {
    "stem": 3 * 64 * 49 + 2 * 64,
    "layer1": 2 * _block(64, 64),
    "layer2": _block(64, 128) + _block(128, 128),
    "layer3": _block(128, 256) + _block(256, 256),
    "layer4": _block(256, 512) + _block(512, 512),
    "fc": 512 * 2 + 2,
}


@pytest.fixture(scope="module")
def backbone():
    return tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)


@pytest.fixture
def setup(backbone, cat_dog):
    model, preprocess = backbone
    train, _ = cat_dog
    return copy.deepcopy(model), train.images[:16], train.labels[:16], preprocess


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed_keys(model, before):
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def test_closed_form_total(backbone):
    assert sum(CLOSED_FORM.values()) == tl.count_params(backbone[0])[1]


def test_head_only(setup):
    model, x, y, pre = setup
    before = _snapshot(model)
    r = train_step(model, x, y, ["fc"], transform=pre)
    assert [s for s in STAGES if r.receives_gradient(s)] == ["fc"]
    assert [s for s in STAGES if r.passes_signal(s)] == ["fc"]  # backward stops at the head's input
    assert r.changed == {s: (2 if s == "fc" else 0) for s in STAGES}
    assert r.changed_names == ["fc.weight", "fc.bias"]
    assert r.trainable_params == 1_026 == CLOSED_FORM["fc"]
    assert _changed_keys(model, before) == {"fc.weight", "fc.bias"}  # everything else bit-identical, BN buffers too


def test_layer4_and_head(setup):
    model, x, y, pre = setup
    before = _snapshot(model)
    r = train_step(model, x, y, ["layer4", "head"], transform=pre)
    assert [s for s in STAGES if r.receives_gradient(s)] == ["layer4", "fc"]
    assert r.trainable == {s: s in ("layer4", "fc") for s in STAGES}
    assert r.changed["layer4"] == r.n_tensors["layer4"] and r.changed["fc"] == 2 and r.changed["layer3"] == 0
    assert r.trainable_params == CLOSED_FORM["layer4"] + CLOSED_FORM["fc"]
    changed = _changed_keys(model, before)
    assert changed and all(k.startswith(("layer4.", "fc.")) for k in changed)
    assert not any(k.startswith("layer3.") for k in changed)
    # the bars show the per-parameter RMS, comparable between 8 M (layer4) and 1 k (fc) parameters
    for s in ("layer4", "fc"):
        assert r.grad_rms[s] == pytest.approx(r.grad_norm[s] / CLOSED_FORM[s] ** 0.5, rel=1e-6)
    assert r.grad_rms["layer3"] == 0.0


def test_layer2_only_signal_passes_frozen_stages(setup):
    model, x, y, pre = setup
    before = _snapshot(model)
    r = train_step(model, x, y, ["layer2"], transform=pre)
    assert [s for s in STAGES if r.receives_gradient(s)] == ["layer2"]
    # to reach layer2's weights the backward pass goes through frozen fc, layer4 and layer3 ...
    assert [s for s in STAGES if r.passes_signal(s)] == ["layer2", "layer3", "layer4", "fc"]
    # ... which pass the signal on without receiving or applying any weight gradient
    assert all(r.grad_norm[s] == 0 and r.changed[s] == 0 for s in ("layer3", "layer4", "fc"))
    assert all(p.grad is None for p in model.layer3.parameters())
    assert r.trainable_params == CLOSED_FORM["layer2"]
    assert {k.split(".")[0] for k in _changed_keys(model, before)} == {"layer2"}


def test_nothing_trainable_changes_nothing(setup):
    model, x, y, pre = setup
    before = _snapshot(model)
    r = train_step(model, x, y, [], transform=pre)
    assert r.trainable_params == 0 and not any(r.receives_gradient(s) or r.passes_signal(s) for s in STAGES)
    assert not _changed_keys(model, before)
    assert r.loss > 0 and r.seconds > 0


def test_summary_is_deterministic_counts(setup):
    model, x, y, pre = setup
    text = train_step(model, x, y, {"layer4": True, "fc": True, "layer1": False}, transform=pre).summary()
    assert "weight gradients reached: layer4, fc" in text
    assert "layer4 15/15, fc 2/2" in text


def test_bad_inputs(setup):
    model, x, y, pre = setup
    with pytest.raises(ValueError, match="labels"):
        train_step(model, x, y[:3], ["fc"], transform=pre)
    with pytest.raises(ValueError, match="Unknown stage 'layer9'"):
        train_step(model, x, y, ["layer9"], transform=pre)


def test_exercise_checks_match_real_steps(setup, capsys):
    from tlhelpers.exercises.nb03 import check_cheaper_step, check_layer3_and_head, check_stem_only

    model, x, y, pre = setup
    r = train_step(copy.deepcopy(model), x, y, ["stem"], transform=pre)
    truth = ({s for s in STAGES if r.receives_gradient(s)}, {s for s in STAGES if r.passes_signal(s)})
    assert check_stem_only(*truth)
    said = capsys.readouterr().out
    assert "not for their" in said and "full backward" not in said  # frozen stages skip weight gradients
    assert not check_stem_only(set(), set())  # the unfilled stub: asks for a prediction, gives no hint
    said = capsys.readouterr().out
    assert "fill in" in said and "chain rule" not in said
    assert not check_stem_only({"stem"}, {"stem"}) and not check_stem_only("stem", None)
    assert not check_layer3_and_head(model)  # the fixture's model is all trainable
    tl.set_trainable(model, ["layer3", "head"])
    assert check_layer3_and_head(model)
    # the reason the check gives: head-only backward stops at once, stem-only runs through every stage
    assert sum(train_step(model, x, y, ["fc"], transform=pre).passes_signal(s) for s in STAGES) == 1
    assert check_cheaper_step("fc") and check_cheaper_step("head") and not check_cheaper_step("stem")
    assert "✅" in capsys.readouterr().out
