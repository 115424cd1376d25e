"""One-line error reports: the first line of an exception's message."""

from tlhelpers.errors import first_line


def test_first_line_of_a_message():
    assert first_line(ValueError("bad value\nTraceback details")) == "bad value"
    assert first_line(OSError("  disk full  \n")) == "disk full"
    assert first_line(RuntimeError("x" * 300), limit=120) == "x" * 120


def test_an_empty_message_gives_the_type_name():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(TimeoutError(""), with_type=True) == "TimeoutError"


def test_with_type_puts_the_type_in_front():
    assert first_line(ConnectionError("refused\nmore"), with_type=True) == "ConnectionError: refused"
    assert first_line(ConnectionError("r" * 50), limit=10, with_type=True) == "ConnectionError: " + "r" * 10
