"""The one error type for bad user input, whichever command meets it.

Every ``InputError`` message is one line naming the file, flag or setting and what is wrong
with it; the CLI prints it and exits 2 (DESIGN.md), and nothing has been run or changed.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input. ``features`` names the CSV columns at fault, when it is data."""

    def __init__(self, message: str, features: tuple[str, ...] = ()):
        super().__init__(message)
        self.features = features
