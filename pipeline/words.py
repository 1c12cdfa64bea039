"""Counts written as a person reads them: "1 frame", "2 frames"."""


def count(n: int, noun: str) -> str:
    """`n` and the noun in the right number (regular English plurals only)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
