"""Stops the pipeline when ExampleValidator found anomalies.

ExampleValidator records anomalies but never fails, so without a gate a run would go on to
train on data the schema rejects. This component fails its step instead; Transform is wired
to run after it, so nothing downstream of bad data runs (locally and as a KFP step alike).
"""

# No `from __future__ import annotations`: TFX reads these annotations as types.
import glob
import os

from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

SCHEMA_DIFF_FILE = "SchemaDiff.pb"
# Plain words for TFDV reasons whose own wording hides what happened to the data.
_DRIFT = "drift from the previous span"
_PLAIN_WORDS = {
    # TFDV says "between current and previous", not what was compared.
    anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH: _DRIFT,
    anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH: _DRIFT,
    anomalies_pb2.AnomalyInfo.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH: _DRIFT,
    # "Feature shape dropped": with one CSV cell per feature, some rows have no value.
    anomalies_pb2.AnomalyInfo.INVALID_FEATURE_SHAPE: "missing values (not one value in every row)",
}


class AnomaliesFoundError(RuntimeError):
    """Raised by the gate; the message lists every anomaly, one per line."""


def _describe(info: anomalies_pb2.AnomalyInfo) -> str:
    """Every reason TFDV gives for one feature, in plain words where TFDV's are not."""
    if not info.reason:
        return f"{info.short_description}: {info.description}"
    return "; ".join(
        f"{_PLAIN_WORDS.get(reason.type, reason.short_description)}: {reason.description}"
        for reason in info.reason
    )


def read_anomalies(anomalies_uri: str) -> list[dict[str, str]]:
    """``[{"feature", "description"}]`` for every split's anomalies under ``anomalies_uri``."""
    found = []
    for path in sorted(glob.glob(os.path.join(anomalies_uri, "Split-*", SCHEMA_DIFF_FILE))):
        split = os.path.basename(os.path.dirname(path))[len("Split-"):]
        anomalies = load_anomalies_binary(path)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            found.append({"feature": feature, "description": f"{split}: {_describe(info)}"})
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
