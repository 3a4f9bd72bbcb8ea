"""Sends a run's library output to ``<output>/run.log`` so the terminal shows only progress.

TFX, Beam, TensorFlow and Keras log and print a great deal; a user needs the component
progress and the outcome on the terminal, and the full story in a file when something fails.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LOG_FILE = "run.log"


@contextlib.contextmanager
def to_file(output_dir: Path) -> Iterator[TextIO]:
    """Logging, warnings and stray prints go to the log; yields the real stdout."""
    output_dir.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    root = logging.getLogger()
    saved_level = root.level
    with (output_dir / LOG_FILE).open("a") as log, contextlib.redirect_stdout(log), \
            warnings.catch_warnings():
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield terminal
        finally:
            logging.captureWarnings(False)
            root.removeHandler(handler)
            root.setLevel(saved_level)
