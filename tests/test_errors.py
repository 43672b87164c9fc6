"""The one-line error text shown to users for unexpected errors."""

from __future__ import annotations

from actscale.errors import one_line


def test_one_line_names_the_type_and_joins_whitespace():
    assert one_line(ValueError("bad\n  value\tthere ")) == "ValueError: bad value there"


def test_one_line_cuts_the_message_not_the_type():
    assert one_line(KeyError("x" * 400), limit=5) == "KeyError: 'xxxx"
    assert len(one_line(RuntimeError("y" * 400))) == len("RuntimeError: ") + 300
