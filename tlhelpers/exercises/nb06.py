"""Self-checks for notebook 06 (choosing a strategy)."""

from __future__ import annotations

from typing import Callable

from ..strategy import recommend_strategy
from . import report

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
    results: dict, answer, better: str = "full fine-tuning", than: str = "feature extraction"
) -> bool:
    """Exercise 4: the target set (a key of ``results``) where strategy ``better`` gained most over ``than``.

    ``results[key][strategy]`` is the measured test accuracy; the right answer is computed from them.
    """
    try:
        gains = {k: v[better] - v[than] for k, v in results.items()}
    except (AttributeError, KeyError, TypeError):
        return report(False, "", "pass the notebook's `results` dict as the first argument.")
    best = max(gains, key=gains.get)
    if answer not in gains:
        return report(False, "", f"answer with one of the keys of results: {', '.join(map(repr, gains))}.")
    ranked = ", ".join(f"{k!r}: {g * 100:+.1f} points" for k, g in sorted(gains.items(), key=lambda kv: -kv[1]))
    return report(
        answer == best,
        f"{better} did best against {than} on {best!r} ({better} minus {than}: {ranked}).",
        f"compute {better} minus {than} for each row of the table, and take the largest.",
    )


def check_strategy_choice(answer, by_seed: dict, target: str = "cat/dog small") -> bool:
    """Exercise 3 (a decision): the strategy to run first on ``target``, judged from runs with several seeds.

    ``by_seed[(target, strategy)]`` is the list of test accuracies over the seeds. The right answer is the
    strategy with the best mean over the seeds, computed from the learner's own runs.
    """
    runs = {s: v for (t, s), v in by_seed.items() if t == target} if isinstance(by_seed, dict) else {}
    if not runs:
        return report(False, "", f"pass the notebook's `by_seed` dict, which holds the runs of {target!r}.")
    if _norm(answer) not in runs:
        return report(False, "", f"answer with one of {', '.join(map(repr, runs))}.")
    means = {s: sum(v) / len(v) for s, v in runs.items()}
    best = max(means, key=means.get)
    wins = sum(max(runs, key=lambda s: runs[s][i]) == best for i in range(len(runs[best])))
    summary = ", ".join(f"{s} {m:.1%}" for s, m in sorted(means.items(), key=lambda kv: -kv[1]))
    return report(
        _norm(answer) == best,
        f"{best} has the best mean over the seeds ({summary}) and was the best run with {wins} of "
        f"{len(runs[best])} seeds.",
        "compare the means over all the seeds (one seed's ranking can flip), not the flowchart's answer.",
    )
