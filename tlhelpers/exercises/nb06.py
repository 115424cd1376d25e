"""Self-checks for notebook 06 (choosing a strategy)."""

from __future__ import annotations

import math
from typing import Callable

from ..strategy import recommend_strategy
from . import judge_choice, report

__all__ = ["SITUATIONS", "check_situations", "check_flowchart", "check_biggest_gain", "check_strategy_choice"]

# Exercise 1: described situations -> (n_images, similarity, budget) for recommend_strategy
SITUATIONS = {
    "a": ("400 labelled aerial photos of roof types; one GPU for a week", (400, "different", "ample")),
    "b": ("50,000 product photos (shoes, bags, lamps); a laptop CPU only", (50_000, "similar", "limited")),
    "c": ("200,000 ultrasound frames; a GPU cluster", (200_000, "different", "ample")),
    "d": ("600 photos of dog breeds; a GPU", (600, "similar", "ample")),
}


def _norm(s) -> str:
    return " ".join(str(s).lower().replace("-", " ").replace("_", " ").split()).replace("fine tuning", "fine-tuning")


def check_situations(answers: dict) -> bool:
    """Exercise 1: the strategy the flowchart recommends for each situation in :data:`SITUATIONS`."""
    if not isinstance(answers, dict) or set(answers) != set(SITUATIONS):
        return report(
            False, "", f"give a dict with the keys {sorted(SITUATIONS)}, e.g. {{'a': 'feature extraction', ...}}."
        )
    wrong = []
    for key, (text, args) in SITUATIONS.items():
        want = recommend_strategy(*args)
        if _norm(answers[key]) != want.strategy:
            wrong.append(f"({key}) {text}: think about {want.path.split(': ', 1)[1]}")
    return report(not wrong, "all four match the flowchart.", f"{len(wrong)} of 4 differ. " + "; ".join(wrong) + ".")


def check_flowchart(fn: Callable[[int, str, str], str]) -> bool:
    """Exercise 2: ``fn(n_images, similarity, budget)`` returns the same strategy name as the flowchart everywhere."""
    if not callable(fn):
        return report(False, "", "pass your function itself, e.g. check_flowchart(my_flowchart).")
    for n in (1, 50, 999, 1_000, 5_000, 10_000, 10_001, 250_000):
        for sim in ("similar", "different"):
            for budget in ("ample", "limited"):
                want = recommend_strategy(n, sim, budget).strategy
                try:
                    got = fn(n, sim, budget)
                except Exception as e:  # a learner's bug: report it as a hint, not a traceback
                    return report(
                        False, "", f"your function raised {type(e).__name__}: {e} for ({n}, {sim!r}, {budget!r})."
                    )
                if _norm(got) != want:
                    return report(
                        False,
                        "",
                        f"for {n:,} images, {sim} domain, {budget} compute the flowchart says {want!r}, yours {got!r}.",
                    )
    return report(True, "your function agrees with the flowchart on all 32 test inputs, boundaries included.", "")


def check_biggest_gain(
    runs: dict,
    answer,
    better: str = "full fine-tuning",
    than: str = "feature extraction",
    on: str = "validation",
) -> bool:
    """Exercise 4: the target set where strategy ``better`` gained most over ``than``, judged on ``on``.

    ``runs[(target, strategy)]`` is a result of ``run_strategy`` (its ``val_correct``). Each gain is a
    ``tl.stats.compare`` of the two strategies on the same images; two gains come from different images,
    so their margins add in quadrature. Every target whose gain ties with the largest is a right answer.
    A target where either run failed to train (``trained`` False) is left out: its gain measures a failure.
    """
    from .. import stats

    key = {"validation": "val_correct", "val": "val_correct"}.get(on)
    stats.require_not_test(on)
    try:
        targets = list(dict.fromkeys(t for t, _ in runs))
        failed = [t for t in targets if not all(runs[t, s].get("trained", True) for s in (better, than))]
        comps = {
            t: stats.compare(runs[t, better][key], runs[t, than][key], on=on, names=(better, than))
            for t in targets
            if t not in failed
        }
    except (AttributeError, KeyError, TypeError, ValueError):
        return report(False, "", "pass the notebook's `runs` dict (runs[target, strategy]) as the first argument.")
    if not comps:
        if answer is None:
            return report(True, "on every target set one of the two runs failed to train: nothing to compare.", "")
        return report(
            False, "", "on every target set one of the two runs failed to train: nothing to compare (answer None)."
        )
    if answer in failed:
        return report(
            False, "", f"on {answer!r} a run failed to train, so its gain says nothing; answer among {list(comps)}."
        )
    if answer not in comps:
        return report(False, "", f"answer with one of the target sets: {', '.join(map(repr, comps))}.")
    best = max(comps, key=lambda t: comps[t].diff)
    tied = [t for t in comps if comps[best].diff - comps[t].diff <= math.hypot(comps[best].margin, comps[t].margin)]
    ranked = ", ".join(
        f"{t!r} {c.diff * 100:+.1f} ± {c.margin * 100:.1f}"
        for t, c in sorted(comps.items(), key=lambda kv: -kv[1].diff)
    )
    gains = f"{better} minus {than} on {on}, points: {ranked}"
    if answer == best:
        extra = (
            ""
            if len(tied) == 1
            else f"; within noise {', '.join(map(repr, tied))} tie with it, so any of them is right"
        )
        return report(True, f"{best!r} has the largest gain ({gains}){extra}.", "")
    if answer in tied:
        return report(
            True,
            f"{best!r} has the largest gain, but {answer!r} ties with it within noise ({gains}); "
            f"the gains that tie: {', '.join(map(repr, tied))}.",
            "",
        )
    return report(False, "", f"{answer!r} is below the largest gain by more than the noise ({gains}).")


def check_strategy_choice(answer, by_seed: dict, target: str = "cat/dog small") -> bool:
    """Exercise 3 (a decision): the strategy to run first on ``target``, chosen on validation over several seeds.

    ``by_seed[(target, strategy)]`` is the list of ``run_strategy`` results (or their ``val_correct``) over
    the seeds. The validation images of all seeds are pooled (a seed fixes the split, the same for every
    strategy), and ``tl.stats.choose`` judges: any strategy that ties with the best is right; the course's
    rule takes the cheapest of those, and only that answer is right (the exercise asks for the rule).
    Runs that failed to train (``trained`` False) are left out; when that leaves the strategies different
    numbers of images, they are compared unpaired.
    """
    import torch

    from ..recipe import STRATEGIES

    runs = {s: v for (t, s), v in by_seed.items() if t == target} if isinstance(by_seed, dict) else {}
    if not runs:
        return report(False, "", f"pass the notebook's `by_seed` dict, which holds the runs of {target!r}.")
    ok = {s: [r for r in v if not isinstance(r, dict) or r.get("trained", True)] for s, v in runs.items()}
    pooled = {
        s: torch.cat([r["val_correct"] if isinstance(r, dict) else r for r in ok[s]])
        for s in sorted(ok, key=lambda s: STRATEGIES.index(s) if s in STRATEGIES else len(STRATEGIES))
        if ok[s]
    }
    choice = _norm(answer) if answer else None
    return judge_choice(
        choice,
        pooled,
        on="validation",
        what="strategies (pooled over the seeds whose runs trained)",
        paired=len({len(v) for v in pooled.values()}) == 1,
        why_first=" (cheaper: fewer trainable parameters)",
        rule_only=True,
    )
