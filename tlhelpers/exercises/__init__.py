"""Self-check functions for the notebooks' exercises, one module per notebook (``nb00`` .. ``nb07``).

Each ``check_*`` function prints whether the learner's answer is right (and a hint if not) and
returns True/False, so notebooks and tests can use it alike.
"""

from typing import Callable


def report(ok: bool, success: str, hint: str) -> bool:
    """Print a one-line verdict for an exercise and return ``ok``."""
    print(("✅ Correct: " + success) if ok else ("❌ Not yet: " + hint))
    return bool(ok)


def judge_choice(
    answer,
    candidates,
    *,
    on: str,
    what: str,
    paired: bool = True,
    why_first: str = "",
    label: Callable = str,
    rule_only: bool = False,
) -> bool:
    """A decision exercise judged by ``tl.stats.choose``: ``answer`` (a key of ``candidates``, which map a
    choice to its correctness vector on the split ``on``) is right if it ties with the best within noise.

    The course's rule picks the first tied candidate (``candidates`` are listed in order of preference,
    ``why_first`` says why); another tied one also counts as right, and the verdict says so, unless
    ``rule_only``: then only the course's rule's choice is right (the exercise asks for the rule).
    """
    from .. import stats

    names = ", ".join(map(label, candidates))
    if answer is None:
        return report(False, "", f"set your answer to one of the measured {what}: {names}.")
    if answer not in candidates:
        return report(False, "", f"choose one of the measured {what}: {names}.")
    ch = stats.choose(candidates, on=on, paired=paired, label=label)
    a, first = label(answer), label(ch.chosen)
    if answer == ch.chosen:
        return report(True, ch.sentence, "")
    if rule_only and answer in ch.tied:
        return report(
            False,
            "",
            f"{a} ties with the best within noise, but so does {first}, which comes first{why_first}: "
            f"the course's rule takes the first of the tied.",
        )
    if answer == ch.best:
        c = ch.comparisons[ch.chosen]
        return report(
            True,
            f"{a} scores best on {on}, but {first} ties with it ({c.sentence}) and comes first{why_first}: "
            f"the course's rule takes {first}; within noise both are right.",
            "",
        )
    c = ch.comparisons[answer]
    if answer in ch.tied:
        return report(
            True,
            f"{c.sentence} {a} is as good as the best within noise; the course's rule takes {first}, "
            f"which ties too and comes first{why_first}.",
            "",
        )
    return report(False, "", f"{c.sentence} Choose one that ties with the best.")
