"""The widgets headless: toggles, the Train step button and the strategy controls change what is shown."""

import base64

import pytest

import tlhelpers as tl

pytest.importorskip("ipywidgets")
from tlhelpers.widgets import FineTuningSimulator, StrategyGuide  # noqa: E402


@pytest.fixture
def sim(cat_dog):
    model, pre = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.set_trainable(model, ["fc"])
    train, _ = cat_dog
    return FineTuningSimulator(model, train.images[:16], train.labels[:16], transform=pre)


def test_simulator_starts_from_model_state(sim):
    assert sim.selected() == ["fc"]
    assert "<b class='tl-trainable'>1,026</b>" in sim.status.value
    assert sim.toggles["fc"].button_style == "success" and sim.toggles["layer4"].button_style == "primary"
    assert sim.toggles["layer4"].description == "layer4: Frozen"
    assert "tl-toggle-layer4" in sim.toggles["layer4"]._dom_classes and "tl-train-step" in sim.button._dom_classes


def test_toggle_and_train_step(sim):
    sim.button.click()
    assert "<b class='tl-flow'>fc</b>" in sim.status.value
    first_png = sim.plot.outputs[0]["data"]["image/png"]
    assert base64.b64decode(first_png)[:4] == b"\x89PNG"
    sim.toggles["layer4"].value = True
    assert sim.toggles["layer4"].description == "layer4: Trainable" and sim.toggles["layer4"].button_style == "success"
    layer4_fc = sum(p.numel() for p in sim.model.layer4.parameters()) + 1_026
    assert f"<b class='tl-trainable'>{layer4_fc:,}</b>" in sim.status.value
    assert "toggles changed since" in sim.status.value
    sim.button.click()
    assert "<b class='tl-flow'>layer4, fc</b>" in sim.status.value and "toggles changed since" not in sim.status.value
    assert sim.report.trainable_params == layer4_fc and sim.report.changed["layer3"] == 0
    assert len(sim.plot.outputs) == 1 and sim.plot.outputs[0]["data"]["image/png"] != first_png
    assert not sim.button.disabled


def test_all_frozen_step(sim):
    sim.toggles["fc"].value = False
    assert "<b class='tl-trainable'>0</b>" in sim.status.value
    sim.button.click()
    assert "<b class='tl-flow'>none</b>" in sim.status.value


def test_strategy_guide_follows_controls():
    g = StrategyGuide()
    assert g.recommendation.strategy == "feature extraction"
    assert "<b class='tl-strategy' style='font-size:1.15em'>feature extraction</b>" in g.out.value
    g.similarity.value = "different"
    assert g.recommendation.strategy == "partial fine-tuning" and "partial fine-tuning" in g.out.value
    g.size.value = 100_000
    assert g.recommendation.strategy == "full fine-tuning" and "scenario 4" in g.out.value
    g.budget.value = "limited"
    assert g.recommendation.strategy == "partial fine-tuning" and "limited compute budget" in g.out.value
    assert g.chart.outputs[0]["data"]["text/plain"] == f"<flowchart: {g.recommendation.path}>"
    for cls, c in (
        ("tl-size", g.size),
        ("tl-similarity", g.similarity),
        ("tl-budget", g.budget),
        ("tl-recommendation", g.out),
    ):
        assert cls in c._dom_classes


def test_strategy_guide_bad_start():
    with pytest.raises(ValueError, match="n_images must be one of"):
        StrategyGuide(n_images=123)
    with pytest.raises(ValueError, match="budget must be"):
        StrategyGuide(budget="some")
