"""How the course reports a failure it caught: one line, with the cause and the remedy."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(e: BaseException, limit: int | None = None, with_type: bool = False) -> str:
    """The first line of an exception's message, cut to ``limit`` characters.

    An exception without a message gives its type's name; ``with_type`` puts the type's name in front
    (``"URLError: <urlopen error ...>"``).
    """
    text = str(e).strip()
    line = text.splitlines()[0][:limit] if text else ""
    if with_type or not line:
        return f"{type(e).__name__}: {line}" if line else type(e).__name__
    return line
