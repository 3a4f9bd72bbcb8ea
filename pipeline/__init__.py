"""The tfx-kfp-gke pipeline: TFX on Kubeflow Pipelines, Vertex AI and one machine.

The pipeline's custom artifact types are attributes of this package because TFX's KFP v2
entrypoint finds an artifact's class by importing its schema title, which for a custom type
is its TYPE_NAME, and TFX allows only ``<namespace>.<Class>`` there: ``pipeline.PredictionsCsv``
is the class ``PredictionsCsv`` of the module ``pipeline``. They load on first use, so that
``import pipeline`` stays as light as the CLI needs it.
"""

_ARTIFACT_TYPES = {"PredictionsCsv": "pipeline.components.predictions_export"}


def __getattr__(name: str) -> type:
    if name not in _ARTIFACT_TYPES:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
