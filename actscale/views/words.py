"""Counts in words, one rule for every page and command: "1 run", "3 runs", never "3 run(s)".
Imports nothing, so that the command line's first lines can use it before torch loads."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, the noun plural (``plural``, else ``noun`` + "s") unless ``n`` is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
