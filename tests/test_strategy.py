"""The decision flowchart as a function: the four scenarios, the medium band, the budget step-down, bad inputs."""

import numpy as np
import pytest

from tlhelpers.strategy import LARGE, SMALL, recommend_strategy

FE, PFT, FFT = "feature extraction", "partial fine-tuning", "full fine-tuning"


@pytest.mark.parametrize(
    "n, similarity, strategy, scenario",
    [
        (300, "similar", FE, "scenario 1"),
        (50_000, "similar", FFT, "scenario 2"),
        (300, "different", PFT, "scenario 3"),
        (50_000, "different", FFT, "scenario 4"),
        (5_000, "similar", PFT, "medium"),
        (5_000, "different", PFT, "medium"),
    ],
)
def test_four_scenarios_and_medium_band(n, similarity, strategy, scenario):
    r = recommend_strategy(n, similarity, "ample")
    assert r.strategy == strategy and r.scenario.startswith(scenario)
    assert r.reason and similarity in r.path and f"{n:,}" in r.path


def test_thresholds_are_the_flowchart_boundaries():
    assert recommend_strategy(SMALL - 1).scenario.startswith("scenario 1")
    assert recommend_strategy(SMALL).scenario.startswith("medium")
    assert recommend_strategy(LARGE).scenario.startswith("medium")
    assert recommend_strategy(LARGE + 1).scenario.startswith("scenario 2")
    assert recommend_strategy(np.int64(500)).strategy == FE  # NumPy integers are integers too


def test_trainable_stages_match_strategy():
    assert recommend_strategy(100).trainable == ["fc"]
    assert recommend_strategy(5_000).trainable == ["layer4", "fc"]
    assert recommend_strategy(50_000).trainable == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]


@pytest.mark.parametrize(
    "n, similarity, ample, limited",
    [
        (300, "similar", FE, FE),  # already the cheapest
        (300, "different", PFT, FE),
        (5_000, "similar", PFT, FE),
        (5_000, "different", PFT, FE),
        (50_000, "similar", FFT, FE),
        (50_000, "different", FFT, PFT),  # features must adapt: step down only one level
    ],
)
def test_limited_budget_steps_down(n, similarity, ample, limited):
    a, lim = recommend_strategy(n, similarity, "ample"), recommend_strategy(n, similarity, "limited")
    assert (a.strategy, lim.strategy) == (ample, limited)
    assert lim.scenario == a.scenario
    if limited != ample:
        assert "limited compute budget" in lim.reason


@pytest.mark.parametrize(
    "args, match",
    [
        ((0,), "n_images must be a positive integer"),
        ((-5,), "n_images must be a positive integer"),
        ((2.5,), "n_images must be a positive integer"),
        ((True,), "n_images must be a positive integer"),
        (("1000",), "n_images must be a positive integer"),
        ((100, "Similar"), "similarity must be 'similar' or 'different'"),
        ((100, "similar", "huge"), "budget must be 'limited' or 'ample'"),
    ],
)
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        recommend_strategy(*args)


def test_flowchart_is_drawn_from_the_function():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlhelpers.viz import draw_flowchart

    r = recommend_strategy(300, "different", "limited")
    fig = draw_flowchart(r)
    texts = [t for t in fig.axes[0].texts]
    assert {f"scenario {i}" for i in (1, 2, 3, 4)} <= {t.get_text() for t in texts}
    bold = {t.get_text() for t in texts if t.get_fontweight() == "bold"}
    assert {"small\n< 1,000 images", "partial\nfine-tuning", "feature\nextraction"} <= bold  # the path taken
    assert "large\n> 10,000 images" not in bold
    plt.close(fig)


def test_exercise_checks(capsys):
    from tlhelpers.exercises.nb06 import SITUATIONS, check_biggest_gain, check_flowchart, check_situations

    assert check_situations({k: recommend_strategy(*args).strategy for k, (_, args) in SITUATIONS.items()})
    assert not check_situations({k: "feature extraction" for k in SITUATIONS})
    assert not check_situations(["feature extraction"])

    def solution(n, similarity, budget):
        s = (
            "feature extraction"
            if n < 1_000 and similarity == "similar"
            else ("partial fine-tuning" if n <= 10_000 else "full fine-tuning")
        )
        if budget == "limited" and s != "feature extraction":
            return (
                "partial fine-tuning" if s == "full fine-tuning" and similarity == "different" else "feature extraction"
            )
        return s

    assert check_flowchart(solution)
    assert not check_flowchart(lambda n, s, b: solution(n + 1, s, b))  # off by one at the 1,000 boundary
    assert not check_flowchart(lambda n, s, b: 1 / 0)
    assert not check_biggest_gain({"a": {FE: 0.8}}, "a") and not check_biggest_gain(None, "a")
    out = capsys.readouterr().out
    assert "ZeroDivisionError" in out and "✅" in out


def _val(k: int, n: int = 400):
    """A validation correctness vector with the first ``k`` of ``n`` images right."""
    import torch

    return {"val_correct": torch.arange(n) < k}


def test_biggest_gain_judged_with_margins(capsys):
    from tlhelpers.exercises.nb06 import check_biggest_gain

    # "b" gains 30 points, "a" 2: far apart on 400 images each
    runs = {("a", FE): _val(320), ("a", FFT): _val(328), ("b", FE): _val(200), ("b", FFT): _val(320)}
    assert check_biggest_gain(runs, "b") and not check_biggest_gain(runs, "a")
    assert "below the largest gain by more than the noise" in capsys.readouterr().out
    assert not check_biggest_gain(runs, "c")
    # gains of 2 and 3 points on 40 images: within noise, so both answers are right, and it says so
    small = {("a", FE): _val(20, 40), ("a", FFT): _val(21, 40), ("b", FE): _val(20, 40), ("b", FFT): _val(22, 40)}
    assert check_biggest_gain(small, "b") and check_biggest_gain(small, "a")
    assert "ties with it within noise" in capsys.readouterr().out
    with pytest.raises(ValueError, match="test"):
        check_biggest_gain(runs, "b", on="test")
    # a target where a run failed to train is left out: its "gain" measures the failure
    runs["b", FE] = dict(runs["b", FE], trained=False)
    capsys.readouterr()
    assert not check_biggest_gain(runs, "b") and "failed to train" in capsys.readouterr().out
    assert check_biggest_gain(runs, "a")
    # every target has a failed run (quick mode's one epoch): nothing to compare, and None says so
    runs["a", FFT] = dict(runs["a", FFT], trained=False)
    capsys.readouterr()
    assert not check_biggest_gain(runs, "a") and "answer None" in capsys.readouterr().out
    assert check_biggest_gain(runs, None)


def test_strategy_choice_is_judged_on_validation(capsys):
    from tlhelpers.exercises.nb06 import check_strategy_choice

    # partial is far ahead on validation (three seeds, 40 images each); FE and full tie with each other
    by_seed = {
        ("cat/dog small", FE): [_val(20, 40)] * 3,
        ("cat/dog small", PFT): [_val(38, 40)] * 3,
        ("cat/dog small", FFT): [_val(21, 40)] * 3,
        ("digits small", FE): [_val(39, 40)] * 3,
        ("digits small", PFT): [_val(38, 40)] * 3,
    }
    assert check_strategy_choice("partial fine-tuning", by_seed)
    assert check_strategy_choice("Partial fine tuning", by_seed)
    assert not check_strategy_choice("full fine-tuning", by_seed)
    assert not check_strategy_choice("scratch", by_seed)
    assert not check_strategy_choice("partial fine-tuning", {})
    capsys.readouterr()
    # on digits the two tie: the exercise asks for the course's rule, so only the cheaper one is right
    assert check_strategy_choice("feature extraction", by_seed, target="digits small")
    assert not check_strategy_choice("partial fine-tuning", by_seed, target="digits small")
    assert "the course's rule takes the first of the tied" in capsys.readouterr().out
    # runs that failed to train are left out: partial's only good seed failed, so FE (cheaper, tied) wins
    failed = {k: [dict(v, trained=True) for v in vs] for k, vs in by_seed.items()}
    failed["cat/dog small", PFT] = [dict(_val(40, 40), trained=False)] + [dict(_val(21, 40), trained=True)] * 2
    assert check_strategy_choice("feature extraction", failed)
    assert not check_strategy_choice("partial fine-tuning", failed)


def _tiny_task(n: int, seed: int):
    """Two classes a pretrained backbone can tell apart: dark vs bright noise images, 32 px."""
    import torch

    from tlhelpers.data import ImageTensors

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = (torch.rand(n, 3, 32, 32, generator=g) * 128 + labels[:, None, None, None] * 127).to(torch.uint8)
    return ImageTensors(images, labels, ["dark", "bright"])


def test_run_strategy_selects_on_validation_and_scores_test_once():
    """The one procedure of notebook 06 and benchmarks/transfer_table.py: per-image correctness on the
    20% validation split and on the test set; a passed backbone gives what loading it gives."""
    import torch

    from tlhelpers.models import load_backbone
    from tlhelpers.strategy import run_strategy

    train, test = _tiny_task(40, 0), _tiny_task(30, 1)
    loaded = run_strategy("feature extraction", train, test, weights="course")
    backbone, preprocess = load_backbone("resnet18", weights="course", verbose=False)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    passed = run_strategy("feature extraction", train, test, backbone=backbone, preprocess=preprocess)
    assert len(loaded["val_correct"]) == 8 and len(loaded["test_correct"]) == 30
    assert loaded["val_correct"].dtype == torch.bool
    assert torch.equal(loaded["test_correct"], passed["test_correct"])
    assert torch.equal(loaded["val_correct"], passed["val_correct"])
    assert loaded["test_acc"] == loaded["test_correct"].float().mean().item() > 0.5
    assert loaded["trainable"] == 512 * 2 + 2
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items()), "the backbone was changed"
    with pytest.raises(ValueError, match="pass both"):
        run_strategy("feature extraction", train, test, backbone=backbone)


def test_run_strategy_on_lite0_and_its_test_feature_cache(monkeypatch):
    """Any architecture's stages (not ResNet's "fc"), and a cache that embeds a shared test set once:
    the same results with it as without, and no second pass over the test images."""
    pytest.importorskip("timm")
    import torch

    from tlhelpers import strategy
    from tlhelpers.models import LITE0, load_backbone

    backbone, preprocess = load_backbone(LITE0, weights="random", verbose=False)
    train, test = _tiny_task(20, 0), _tiny_task(12, 1)
    kw = dict(backbone=backbone, preprocess=preprocess)
    plain = strategy.run_strategy("feature extraction", train, test, **kw)
    sizes, real = [], strategy.embed
    monkeypatch.setattr(strategy, "embed", lambda m, x, *a, **k: (sizes.append(len(x)), real(m, x, *a, **k))[1])
    cache: dict = {}
    first = strategy.run_strategy("feature extraction", train, test, cache=cache, **kw)
    again = strategy.run_strategy("feature extraction", train, test, cache=cache, seed=1, **kw)
    assert sizes.count(len(test)) == 1, sizes  # the test set went through the backbone once
    assert torch.equal(plain["test_correct"], first["test_correct"]) and len(again["test_correct"]) == 12
    assert first["trainable"] == backbone.classifier.in_features * 2 + 2
    other = _tiny_task(12, 2)  # another test set is not taken from the cache
    strategy.run_strategy("feature extraction", train, other, cache=cache, **kw)
    assert sizes.count(len(test)) == 2
    partial = strategy.run_strategy("partial fine-tuning", train, test, epochs=1, batch_size=8, **kw)
    assert partial["trainable"] > first["trainable"] and len(partial["val_correct"]) == 4


def test_run_strategy_flags_a_run_that_failed_to_train():
    """``trained`` is decided on the training images: a task that cannot be learned (every image the same,
    half of them labelled each class) stays at the majority share and is flagged; a normal run is not."""
    import torch

    from tlhelpers.data import ImageTensors
    from tlhelpers.models import load_backbone
    from tlhelpers.strategy import run_strategy, trained

    backbone, preprocess = load_backbone("resnet18", weights="course", verbose=False)
    kw = dict(backbone=backbone, preprocess=preprocess)
    train, test = _tiny_task(40, 0), _tiny_task(30, 1)
    same = ImageTensors(train.images[:1].expand(40, -1, -1, -1).clone(), train.labels, train.classes)
    for strategy in (FE, PFT):
        ok = run_strategy(strategy, train, test, epochs=2, batch_size=8, **kw)
        failed = run_strategy(strategy, same, test, epochs=2, batch_size=8, **kw)
        assert ok["trained"] and ok["train_acc"] > 0.75, (strategy, ok["train_acc"])
        assert not failed["trained"] and failed["train_acc"] == 0.5, (strategy, failed["train_acc"])
    labels = torch.tensor([0, 0, 0, 1])  # majority share 75%: trained from 81.25% on
    assert trained(torch.tensor([True, True, True, True]), labels)
    assert not trained(torch.tensor([True, True, True, False]), labels)
