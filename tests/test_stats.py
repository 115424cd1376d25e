"""tlhelpers.stats against values computed by hand or published, plus coverage by simulation."""

import numpy as np
import pytest

from tlhelpers import stats


def _pair(n10: int, n01: int, n11: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors of A and B with the given counts (n10: only A right, n01: only B right)."""
    a = np.array([1] * n10 + [0] * n01 + [1] * n11 + [0] * n00, bool)
    b = np.array([0] * n10 + [1] * n01 + [1] * n11 + [0] * n00, bool)
    return a, b


def test_wilson_interval_known_values():
    # 80/100: Wilson 95% = (0.7112, 0.8666), e.g. Newcombe (1998), Stat Med 17:857, and any textbook table.
    iv = stats.accuracy_interval((80, 100))
    assert iv.acc == 0.8
    assert iv.low == pytest.approx(0.7112, abs=1e-4) and iv.high == pytest.approx(0.8666, abs=1e-4)
    assert iv.margin == pytest.approx(0.8 - 0.7112, abs=1e-4)
    assert stats.accuracy_interval(np.r_[np.ones(80), np.zeros(20)]) == iv  # a vector gives the same


def test_rule_of_three_at_zero_or_n_errors():
    assert (stats.accuracy_interval((200, 200)).low, stats.accuracy_interval((200, 200)).high) == (1 - 3 / 200, 1.0)
    assert (stats.accuracy_interval((0, 200)).low, stats.accuracy_interval((0, 200)).high) == (0.0, 3 / 200)


def test_mcnemar_exact_known_values():
    # 15 images only A gets right, 5 only B: scipy.stats.binomtest(15, 20).pvalue = 0.041389,
    # its Clopper-Pearson 95% CI (0.50895, 0.91343), so the paired diff's interval on 100 images is
    # 20 * (2 * 0.50895 - 1) / 100 = 0.00358 to 20 * (2 * 0.91343 - 1) / 100 = 0.16537.
    a, b = _pair(15, 5, 60, 20)
    d, low, high, p = stats.paired(a, b)
    assert d == pytest.approx(0.10)
    assert p == pytest.approx(0.041389, abs=1e-6)
    assert low == pytest.approx(0.00358, abs=1e-5) and high == pytest.approx(0.16537, abs=1e-5)
    c = stats.compare(a, b, on="validation")
    assert c.verdict == "better" and c.p == p and c.margin == pytest.approx(d - low)
    assert stats.compare(b, a, on="validation").verdict == "worse"
    # 12 vs 8: binomtest(12, 20).pvalue = 0.5034 -> a tie although A is 4 points ahead
    t = stats.compare(*_pair(12, 8, 60, 20), on="val")
    assert t.verdict == "tie" and t.p == pytest.approx(0.50344, abs=1e-5) and abs(t.diff) <= t.margin
    assert "tie within noise" in t.sentence and "paired" in t.sentence


def test_paired_verdict_agrees_with_the_exact_test():
    for n10 in range(0, 31):
        c = stats.compare(*_pair(n10, 30 - n10, 50, 20), on="val")
        assert (c.verdict != "tie") == (c.p < 0.05), (n10, c.p, c.low, c.high)
        assert (c.verdict != "tie") == (abs(c.diff) > c.margin)


def test_newcombe_unpaired_known_values():
    # Newcombe (1998) Stat Med 17:873, method 10, example (56/70 vs 48/80): 95% CI 0.0524 to 0.3339.
    d, low, high = stats.unpaired((56, 70), (48, 80))
    assert d == pytest.approx(0.2)
    assert low == pytest.approx(0.0524, abs=1e-4) and high == pytest.approx(0.3339, abs=1e-4)
    assert stats.compare((56, 70), (48, 80), on="validation", paired=False).verdict == "better"


def test_paired_is_sharper_than_unpaired_for_correlated_models():
    a, b = _pair(15, 5, 60, 20)
    assert stats.compare(a, b, on="val").margin < stats.compare(a, b, on="val", paired=False).margin


def test_wilson_coverage_by_simulation():
    rng = np.random.default_rng(0)
    for p, n in [(0.7, 200), (0.95, 100)]:
        ks = rng.binomial(n, p, size=2000)
        hit = [(iv.low <= p <= iv.high) for iv in (stats.accuracy_interval((int(k), n)) for k in ks)]
        assert 0.93 <= np.mean(hit) <= 0.975, (p, n, np.mean(hit))


def test_paired_false_tie_rate_by_simulation():
    """Two equally good models on the same images: about 5% (at most) of comparisons may call a winner."""
    rng = np.random.default_rng(1)
    wrong = 0
    for _ in range(400):
        easy = rng.random(300) < 0.7  # images both tend to get right
        a = np.where(rng.random(300) < 0.8, easy, rng.random(300) < 0.7)
        b = np.where(rng.random(300) < 0.8, easy, rng.random(300) < 0.7)
        wrong += stats.compare(a, b, on="val").verdict != "tie"
    assert wrong / 400 <= 0.07, wrong


def test_choose_picks_the_first_within_noise():
    rng = np.random.default_rng(2)
    truth = {"layer1": 0.55, "layer2": 0.70, "layer3": 0.72, "layer4": 0.71}
    cands = {s: rng.random(1000) < p for s, p in truth.items()}  # independent errors
    assert max(cands, key=lambda s: cands[s].mean()) == "layer4"  # seed 2's draw: layer4 scores highest
    ch = stats.choose(cands, on="validation")
    assert ch.best == "layer4" and ch.chosen == "layer2" and ch.tied == ["layer2", "layer3", "layer4"]
    assert "layer2" in ch.sentence and "ties with the best" in ch.sentence
    assert stats.choose({"only": cands["layer1"]}, on="val").chosen == "only"
    assert stats.choose({"x": (10, 100), "y": (90, 100)}, on="val", paired=False).chosen == "y"


@pytest.mark.parametrize("split", ["test", "Test", "cifar_test", "test set", "TEST-2000"])
def test_selection_refuses_the_test_split(split):
    a, b = _pair(15, 5, 60, 20)
    with pytest.raises(ValueError, match="validation split"):
        stats.compare(a, b, on=split)
    with pytest.raises(ValueError, match="validation split"):
        stats.choose({"a": a, "b": b}, on=split)


@pytest.mark.parametrize("split", ["validation", "val", "latest", "held-out training images"])
def test_selection_accepts_other_splits(split):
    stats.require_not_test(split)


def test_errors_name_the_cause():
    with pytest.raises(ValueError, match="same images"):
        stats.compare(np.ones(5, bool), np.ones(6, bool), on="val")
    with pytest.raises(ValueError, match="correctness"):
        stats.accuracy_interval(np.array([0.3, 0.9]))
    with pytest.raises(TypeError):
        stats.compare(np.ones(5, bool), np.ones(5, bool))  # `on` must be named


def test_timing_summary():
    t = stats.timing_summary([0.30, 0.10, 0.12, 0.11, 0.50])
    assert (t.min, t.median, t.n) == (0.10, 0.12, 5) and t.spread == pytest.approx(0.40)
    assert str(t) == "min 100.0 ms, median 120.0 ms, spread 400.0 ms (5 runs)"
    with pytest.raises(ValueError, match="No timings"):
        stats.timing_summary([])


def test_mean_interval_known_values():
    iv = stats.mean_interval([0.2, 0.4, 0.6, 0.8])  # mean 0.5, sd 0.258, t(3) = 3.182
    assert iv.acc == pytest.approx(0.5)
    assert iv.high - iv.acc == pytest.approx(3.1824 * 0.25820 / 2, rel=1e-3)
    assert iv.n == 4 and iv.low < 0.5 < iv.high
    with pytest.raises(ValueError, match="at least two"):
        stats.mean_interval([0.5])
