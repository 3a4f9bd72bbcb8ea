"""Pipeline settings: one frozen object, built from CLI flags; no I/O at import."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.models import constants

PIPELINE_NAME = "social-network-ads"
MODEL_NAME = "social_network_ads"
# ExampleGen's split: train:eval = 3:1 by hash buckets.
TRAIN_BUCKETS, EVAL_BUCKETS = 3, 1


@dataclass(frozen=True)
class PipelineConfig:
    """Where the run reads and writes, and how hard it trains and judges."""

    output_dir: Path
    data_dir: Path  # staged training CSV directory (CsvExampleGen input_base)
    training_rows: int  # rows in the staged CSV; sizes the training steps
    inference_data_dir: Path | None = None  # staged unlabelled CSV; None: the eval split
    hparams_dir: Path | None = None  # directory with best_hyperparameters.txt to import
    tune: bool = True
    seed: int = 0
    epochs: int = constants.EPOCHS
    tuner_max_trials: int = constants.TUNER_MAX_TRIALS
    tuner_time_budget_seconds: float = constants.TUNER_TIME_BUDGET_SECONDS
    # Evaluator gates: absolute floors, and no regression against the baseline.
    min_auc: float = 0.85
    min_binary_accuracy: float = 0.75
    max_auc_regression: float = 1e-10
    infra_validation_examples: int = 16
    enable_cache: bool = True
    beam_args: tuple[str, ...] = field(
        default=("--direct_running_mode=in_memory", "--direct_num_workers=1")
    )
    pipeline_name: str = PIPELINE_NAME
    model_name: str = MODEL_NAME

    @property
    def pipeline_root(self) -> Path:
        return self.output_dir / "pipeline_root"

    @property
    def metadata_path(self) -> Path:
        return self.output_dir / "metadata.sqlite"

    @property
    def serving_model_dir(self) -> Path:
        """TF Serving's model base path: versions are its integer-named subdirectories."""
        return self.output_dir / "serving" / self.model_name

    @property
    def train_steps(self) -> int:
        """TrainArgs.num_steps: ``epochs`` passes over the (expected) train split."""
        train_rows = self.training_rows * TRAIN_BUCKETS / (TRAIN_BUCKETS + EVAL_BUCKETS)
        return max(1, math.ceil(train_rows / constants.BATCH_SIZE)) * self.epochs
