"""Self-checks for notebook 01 (the hierarchy of features)."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch
import torchvision

from . import judge_choice, report

__all__ = ["check_layer4_size", "check_probe_function", "check_largest_gap", "check_stage_choice"]


def layer4_size(input_size: int) -> int:
    """Side length of ResNet18's layer4 feature map for a square ``input_size`` input (measured by a forward pass)."""
    body = torchvision.models.resnet18(weights=None).eval()
    out = {}
    body.layer4.register_forward_hook(lambda m, i, o: out.setdefault("x", o))
    with torch.inference_mode():
        body(torch.zeros(1, 3, input_size, input_size))
    return int(out["x"].shape[-1])


def check_layer4_size(answer: int, input_size: int = 224) -> bool:
    """Exercise 1: the side of layer4's map for an ``input_size`` px image (ResNet18 downsamples by 32)."""
    truth = layer4_size(input_size)
    ok = isinstance(answer, (int, np.integer)) and int(answer) == truth
    return report(
        ok,
        f"a {input_size} px image leaves layer4 as 512 maps of {truth}x{truth}.",
        "count the halvings: conv1 (stride 2), maxpool, layer2, layer3 and layer4 each halve the size (rounding up).",
    )


def _synthetic_task(n: int, d: int, seed: int, separable: bool) -> tuple[np.ndarray, ...]:
    """n train + n test points in d badly scaled dimensions; if ``separable``, 5 of them carry the class."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(2 * n) % 2)
    scale = rng.uniform(0.1, 50, size=d)
    x = rng.normal(size=(2 * n, d)) * scale
    if separable:
        x[:, :5] += (2 * y[:, None] - 1) * 2 * scale[:5]  # class means 4 standard deviations apart
    return x[:n], y[:n], x[n:], y[n:]


def check_probe_function(probe: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]) -> bool:
    """Exercise 2: ``probe(train_x, train_y, eval_x, eval_y)``: held-out accuracy of a classifier fit on train.

    Tried on a separable synthetic task (must score >= 0.9) and on pure noise (must stay near chance,
    which catches probes that peek at the test labels), and the result must be a fraction in [0, 1].
    """
    try:
        results = [probe(*_synthetic_task(300, 100, seed, separable=seed == 0)) for seed in (0, 1)]
    except Exception as e:  # the learner's code raised: say what happened
        return report(False, "", f"your probe raised {type(e).__name__}: {e}")
    if any(r is None for r in results):
        return report(False, "", "your probe returned None: fill in the body and `return` the accuracy.")
    try:
        sep, noise = (float(r) for r in results)
    except (TypeError, ValueError):
        kind = type(results[0]).__name__
        return report(False, "", f"return the accuracy as one number, a fraction between 0 and 1 (got a {kind}).")
    if not (0.0 <= sep <= 1.0 and 0.0 <= noise <= 1.0):
        return report(False, "", f"return the accuracy as a fraction between 0 and 1 (got {sep:.3g} and {noise:.3g}).")
    ok = sep >= 0.9 and noise <= 0.62
    hint = (
        "on separable data it scored only {:.0%}: fit on the training features, score on the test features, "
        "and standardize with the training mean and std first.".format(sep)
        if sep < 0.9
        else f"on pure noise it scored {noise:.0%}: a fair probe never sees the test labels while fitting."
    )
    return report(ok, f"{sep:.0%} on a separable task and {noise:.0%} (chance) on noise.", hint)


def pretraining_gains(correct_pretrained: Mapping[str, object], correct_random: Mapping[str, object], on: str):
    """Per stage, pretrained minus random init on the same images (``stats.compare``, paired); the stage with the
    largest gain; and every stage whose gain ties with it.

    Two gains tie when the interval of their difference includes zero: per image, a stage's gain is +1, 0 or -1
    (pretrained right and random wrong, both the same, the reverse), and ``stats.mean_interval`` of the
    per-image difference between two stages' gains is that interval. Returns ``(gains, best, tied)``.
    """
    from .. import stats

    def as_int(v) -> np.ndarray:
        return np.asarray(v.cpu() if hasattr(v, "cpu") else v).astype(int).reshape(-1)

    gains = {
        s: stats.compare(correct_pretrained[s], correct_random[s], on=on, names=(f"{s} pretrained", "random init"))
        for s in correct_pretrained
    }
    per_image = {s: as_int(correct_pretrained[s]) - as_int(correct_random[s]) for s in gains}
    best = max(gains, key=lambda s: gains[s].diff)  # the first of equal maxima
    tied = [s for s in gains if s == best or stats.mean_interval(per_image[s] - per_image[best]).high >= 0]
    return gains, best, tied


def check_largest_gap(
    correct_pretrained: Mapping[str, object], correct_random: Mapping[str, object], answer: str, on: str = "validation"
) -> bool:
    """Exercise 3: a stage where pretrained features beat random ones by the most, within noise.

    ``correct_*``: stage -> correctness vector of its probe on the same ``on`` images. The largest gain is
    right, and so is any stage whose gain ties with it (the 95% interval of the difference includes zero).
    """
    gains, best, tied = pretraining_gains(correct_pretrained, correct_random, on)

    def gain(s: str) -> str:
        g = gains[s]
        return f"{s} {100 * g.diff:+.1f} points (95% interval {100 * g.low:+.1f} to {100 * g.high:+.1f})"

    if answer not in gains:
        return report(False, "", f"answer with a stage name: one of {', '.join(gains)}.")
    others = [s for s in tied if s != best]
    if answer == best:
        tail = f"; within noise of it: {', '.join(others)}" if others else ", above every other stage's beyond noise"
        return report(True, f"{gain(best)}: the largest gain over random init{tail}.", "")
    if answer in tied:
        return report(
            True,
            f"{gain(answer)} ties with the largest, {gain(best)}: the interval of their difference includes "
            "zero, so within noise both are right.",
            "",
        )
    return report(
        False,
        "",
        f"{gain(answer)} is below the largest gain, {gain(best)}, beyond noise. Compute, for every stage s, "
        "tl.stats.compare(correct_pretrained[s], correct_random[s], on='validation') and look at .diff "
        f"(stages: {', '.join(gains)}).",
    )


def check_stage_choice(answer: str, correct: Mapping[str, object], on: str = "validation") -> bool:
    """Exercise 4 (a decision): a stage whose probe ties with the best stage's within noise, judged by
    ``tl.stats.choose`` (paired, the same validation images); the course's rule takes the earliest (cheapest).

    ``correct``: stage -> correctness vector of its probe on the validation images, stages in network order.
    """
    return judge_choice(answer, correct, on=on, what="stages", why_first=" (earlier stages are cheaper)")
