"""Self-check functions for the notebooks' exercises, one module per notebook (``nb00`` .. ``nb07``).

Each ``check_*`` function prints whether the learner's answer is right (and a hint if not) and
returns True/False, so notebooks and tests can use it alike.
"""


def report(ok: bool, success: str, hint: str) -> bool:
    """Print a one-line verdict for an exercise and return ``ok``."""
    print(("✅ Correct: " + success) if ok else ("❌ Not yet: " + hint))
    return bool(ok)
