"""Stops the pipeline when ExampleValidator found anomalies.

ExampleValidator records anomalies but never fails, so without a gate a run would go on to
train on data the schema rejects. This component fails its step instead; Transform is wired
to run after it, so nothing downstream of bad data runs (locally and as a KFP step alike).
"""

# No `from __future__ import annotations`: TFX reads these annotations as types.
import glob
import os

from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
from tfx import v1 as tfx
from tfx.types import artifact_utils

SCHEMA_DIFF_FILE = "SchemaDiff.pb"


class AnomaliesFoundError(RuntimeError):
    """Raised by the gate; the message lists every anomaly, one per line."""


def read_anomalies(anomalies_uri: str) -> list[dict[str, str]]:
    """``[{"feature", "description"}]`` for every split's anomalies under ``anomalies_uri``."""
    found = []
    for path in sorted(glob.glob(os.path.join(anomalies_uri, "Split-*", SCHEMA_DIFF_FILE))):
        split = os.path.basename(os.path.dirname(path))[len("Split-"):]
        anomalies = load_anomalies_binary(path)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            found.append({
                "feature": feature,
                "description": f"{split}: {info.short_description}: {info.description}",
            })
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            found.append({
                "feature": "(dataset)",
                "description": f"{split}: {info.short_description}: {info.description}",
            })
    return found


def format_anomalies(anomalies: list[dict[str, str]]) -> str:
    return "\n".join(f"  {item['feature']}: {item['description']}" for item in anomalies)


@tfx.dsl.components.component
def AnomaliesGate(  # noqa: N802 - TFX component names are class-like
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
    """Fails when any validated split has anomalies against the curated schema."""
    found = read_anomalies(artifact_utils.get_single_uri([anomalies]))
    if found:
        raise AnomaliesFoundError(
            f"{len(found)} data anomalies against the curated schema:\n"
            + format_anomalies(found)
        )
