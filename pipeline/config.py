"""Pipeline settings: one frozen object, built from CLI flags; no I/O at import.

Locations are strings, not paths: on a cluster they are URIs (``gs://...``) or paths on a
volume the step pods mount, and the pipeline only passes them on to TFX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline import targets
from pipeline.errors import InputError
from pipeline.models import constants

# The curated schema ships inside the package (and so inside the pipeline image).
CURATED_SCHEMA = Path(__file__).parent / "data" / "schema" / "schema.pbtxt"

PIPELINE_NAME = "social-network-ads"
# The KFP experiment runs are filed under unless told otherwise.
DEFAULT_EXPERIMENT = PIPELINE_NAME
# How long `submit --wait` follows a run: a tuned run takes over an hour on a small cluster.
DEFAULT_RUN_TIMEOUT_SECONDS = 6 * 3600
# Runs of one schedule at once: a retrain still running when the next is due is not doubled up.
DEFAULT_MAX_CONCURRENCY = 1
MODEL_NAME = "social_network_ads"
# ExampleGen's split: train:eval = 3:1 by hash buckets.
TRAIN_BUCKETS, EVAL_BUCKETS = 3, 1
# The TF Serving image the InfraValidator starts, and the release whose TensorFlow matches
# the training stack (TF 2.16).
TF_SERVING_IMAGE = "tensorflow/serving"
TF_SERVING_TAG = "2.16.1"
# The Trainer's training and export function, by dotted path (see PipelineConfig.run_fn).
DEFAULT_RUN_FN = "pipeline.models.model.run_fn"
# Served versions the Pusher keeps: room for a few rollbacks, bounded disk.
DEFAULT_KEEP_VERSIONS = 5
DEFAULT_SEED = 0
# Examples the InfraValidator sends to the served model per signature.
INFRA_VALIDATION_EXAMPLES = 16
# What every step container of a cluster run asks for. A step holds TensorFlow and Beam in
# one process: about 1.3-2.5 GiB (benchmarks/).
STEP_CPU_REQUEST, STEP_CPU_LIMIT = 0.5, 2.0
STEP_MEMORY_REQUEST_GIB, STEP_MEMORY_LIMIT_GIB = 2.0, 4.0
# Where steps mount a volume claim, when one is given.
VOLUME_MOUNT_PATH = "/tfx"
# Beam's DirectRunner, in this process, one worker: what every step's Beam work runs on
# unless told otherwise (Dataflow: dataflow_beam_args; local runs: local_beam_args). These
# are Beam's defaults, so they are given as no arguments at all: given any, TFX copies its
# own installation into a 52 MB sdist for remote workers, in a temporary directory it never
# removes, once per Beam step (tfx/utils/dependency_utils.py).
IN_MEMORY_BEAM_ARGS: tuple[str, ...] = ()
# From this many rows a local run gives each core a DirectRunner worker process. Measured on
# 2 cores (benchmarks/results/direct_runner_modes.md): at 100k rows one in-memory worker is
# 39 s faster (a worker process takes seconds to start and import TensorFlow), at 1M rows two
# processes are 139 s faster; the two measurements cross near 300k.
MULTI_PROCESS_FROM_ROWS = 300_000


def local_beam_args(rows: int) -> tuple[str, ...]:
    """The DirectRunner options a local run on ``rows`` training rows uses."""
    cores = os.cpu_count() or 1
    if rows < MULTI_PROCESS_FROM_ROWS or cores == 1:
        return IN_MEMORY_BEAM_ARGS
    return ("--direct_running_mode=multi_processing", f"--direct_num_workers={cores}")


def dataflow_beam_args(
    project: str | None, region: str | None, temp_location: str | None, image: str
) -> tuple[str, ...]:
    """Beam on Dataflow; raises InputError naming the settings that are missing."""
    missing = [flag for flag, value in (("--dataflow-project", project),
                                        ("--dataflow-region", region),
                                        ("--dataflow-temp-location", temp_location))
               if not value]
    if missing:
        raise InputError(f"--beam-runner dataflow needs {', '.join(missing)}")
    # Dataflow workers run the pipeline image too: preprocessing_fn lives in this package.
    return (
        "--runner=DataflowRunner",
        f"--project={project}",
        f"--region={region}",
        f"--temp_location={temp_location}",
        f"--sdk_container_image={image}",
        "--experiments=use_runner_v2",
    )


@dataclass(frozen=True)
class PipelineConfig:
    """Where the run reads and writes, and how hard it trains and judges."""

    pipeline_root: str  # TFX artifacts
    data_root: str  # directory of the training CSV (CsvExampleGen input_base)
    serving_model_dir: str  # TF Serving's model base path: integer-named version dirs
    inference_data_root: str | None = None  # unlabelled CSV directory; None: the eval split
    hparams_uri: str | None = None  # directory with best_hyperparameters.txt to import
    schema_file: str = str(CURATED_SCHEMA)  # on a cluster: its path inside the image
    target: str = targets.LOCAL.name
    tune: bool = True
    seed: int = DEFAULT_SEED
    epochs: int = constants.EPOCHS
    # Another model through the same gates: any importable function with run_fn's contract
    # (FnArgs in, a SavedModel with serving_default and serving_raw written out).
    run_fn: str = DEFAULT_RUN_FN
    # The Pusher keeps this many newest versions and retires older ones; 0 keeps all.
    keep_versions: int = DEFAULT_KEEP_VERSIONS
    tuner_max_trials: int = constants.TUNER_MAX_TRIALS
    # Evaluator gates: absolute floors, and no regression against the baseline.
    min_auc: float = 0.85
    min_binary_accuracy: float = 0.75
    max_auc_regression: float = 1e-10
    infra_validation_examples: int = INFRA_VALIDATION_EXAMPLES
    tf_serving_image: str = TF_SERVING_IMAGE
    tf_serving_tag: str = TF_SERVING_TAG
    # Cluster runs only: the TF Serving pod's service account (Workload Identity for a
    # gs:// pipeline root on GKE), and what every step container asks for.
    serving_service_account: str = ""
    step_cpu_request: float = STEP_CPU_REQUEST
    step_cpu_limit: float = STEP_CPU_LIMIT
    step_memory_request_gib: float = STEP_MEMORY_REQUEST_GIB
    step_memory_limit_gib: float = STEP_MEMORY_LIMIT_GIB
    enable_cache: bool = True
    # kfp only: a PersistentVolumeClaim every step mounts, for what is not an artifact on
    # kind/minikube (training data, the serving directory, the InfraValidator's model copy).
    volume_claim: str = ""
    volume_mount_path: str = ""
    beam_args: tuple[str, ...] = IN_MEMORY_BEAM_ARGS
    pipeline_name: str = PIPELINE_NAME
    model_name: str = MODEL_NAME

    def __post_init__(self) -> None:
        if self.target not in targets.TARGETS:
            raise InputError(
                f"target must be one of {', '.join(targets.TARGETS)}, got {self.target!r}"
            )
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.keep_versions < 0:
            raise InputError(
                f"keep_versions must be 0 (keep all) or more, got {self.keep_versions}"
            )

    @property
    def platform(self) -> targets.Target:
        """What differs where this pipeline runs (pipeline.targets)."""
        return targets.TARGETS[self.target]


def local_paths(output_dir: Path) -> dict[str, str]:
    """The local run's layout under one output directory."""
    return {
        "pipeline_root": str(output_dir / "pipeline_root"),
        "serving_model_dir": str(output_dir / "serving" / MODEL_NAME),
    }
