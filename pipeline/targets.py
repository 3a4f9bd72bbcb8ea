"""Where the pipeline runs, and everything that differs because of it, in one place.

The pipeline definition (pipeline.py) and the compiler (runners/kubeflow/compiler.py) ask a
``Target`` what to do instead of testing its name, so a reader finds every difference
between local, Kubeflow Pipelines and Vertex AI runs here, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    # The Evaluator's baseline. A served-model lookup step reads the newest version in the
    # serving directory: after a rollback that is the restored model, which a new model must
    # beat. Open-source KFP cannot run TFX's Resolver at all ("resolver executors not
    # implemented"). Vertex runs TFX's latest-blessed-model Resolver natively and keeps it.
    baseline_from_resolver: bool
    # Drift against the last accepted span needs a Resolver over ML Metadata. Open-source KFP
    # cannot run one, and Vertex compiles it to a query by artifact type alone, which would
    # pick up a rejected span's or another pipeline's statistics: validation there is
    # against the schema only.
    checks_drift: bool
    # InfraValidator: TF Serving in a pod beside the step (needs the Kubernetes API of the
    # cluster the step runs in), or the model loaded in process the way TF Serving loads it
    # (local runs; Vertex steps run on managed machines with no Kubernetes API).
    serves_in_pod: bool
    # Compiled spec: None for local runs (LocalDagRunner takes the pipeline directly).
    spec_format: str | None
    # URI schemes a pipeline root (and the KFP importer's source) may use.
    pipeline_root_schemes: tuple[str, ...]
    # Open-source KFP only: steps run our entrypoint and can mount a PersistentVolumeClaim.
    open_source_kfp: bool


LOCAL = Target(
    name="local", baseline_from_resolver=False, checks_drift=True, serves_in_pod=False,
    spec_format=None, pipeline_root_schemes=(), open_source_kfp=False,
)
KFP = Target(
    name="kfp", baseline_from_resolver=False, checks_drift=False, serves_in_pod=True,
    spec_format="yaml", pipeline_root_schemes=("gs://", "minio://", "s3://"),
    open_source_kfp=True,
)
VERTEX = Target(
    name="vertex", baseline_from_resolver=True, checks_drift=False, serves_in_pod=False,
    spec_format="json", pipeline_root_schemes=("gs://",), open_source_kfp=False,
)
TARGETS = {target.name: target for target in (LOCAL, KFP, VERTEX)}
# The targets `tfxkfp compile` writes a spec for.
COMPILED = tuple(name for name, target in TARGETS.items() if target.spec_format)
