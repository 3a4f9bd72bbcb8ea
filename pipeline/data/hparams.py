"""Stages saved hyperparameters for the "tune once, then import" workflow.

Accepts the Tuner's own output (``best_hyperparameters.txt``, a KerasTuner config) or a
plain JSON object of values, checks every value against the search space, and writes a
KerasTuner config into a directory named by its content. The Importer reuses an artifact
whose URI it has seen before, so a content-addressed directory is what makes a changed
file count as new hyperparameters.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras_tuner

from pipeline.errors import InputError
from pipeline.models import constants

HPARAMS_FILE = "best_hyperparameters.txt"  # the name TFX's Tuner writes and Trainer reads


def _values(source: Path) -> dict:
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    try:
        loaded = json.loads(source.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{source}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(loaded, dict):
        raise InputError(f"{source}: expected a JSON object")
    values = loaded.get("values", loaded) if "space" in loaded else loaded
    if not isinstance(values, dict):
        raise InputError(f"{source}: field values: expected a JSON object")
    return values


def stage(source: Path, destination_root: Path) -> Path:
    """Validates ``source``; returns the directory holding the staged config."""
    values = _values(source)
    hparams = keras_tuner.HyperParameters()
    for name, value in values.items():
        if name not in constants.SEARCH_SPACE:
            raise InputError(
                f"{source}: field {name}: unknown hyperparameter "
                f"(known: {', '.join(constants.SEARCH_SPACE)})"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InputError(f"{source}: field {name}: expected a positive number, got {value!r}")
        hparams.Fixed(name, value)
    content = json.dumps(hparams.get_config(), sort_keys=True)
    destination = destination_root / hashlib.sha256(content.encode()).hexdigest()[:12]
    destination.mkdir(parents=True, exist_ok=True)
    (destination / HPARAMS_FILE).write_text(content)
    return destination
