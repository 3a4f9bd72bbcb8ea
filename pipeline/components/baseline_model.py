"""Finds the baseline model: the newest version being served.

A new model must be at least as good as what users get today, and that is the newest
version in the serving directory, not the last model blessed: after ``tfxkfp rollback`` the
two differ. This component is the baseline of local runs and of Kubeflow Pipelines, where it
is needed anyway: TFX's latest-blessed-model Resolver compiles to a `resolver` executor,
which open-source KFP 2.x refuses ("resolver executors not implemented"); this is an
ordinary container step. It reads outside its inputs, so it is never cached.

It copies the newest served version (``model_versions.served_versions``) into its output
``Model`` artifact (as TFX lays models out, under ``Format-Serving``) and records whether
there was one. On the first run there is none; the Evaluator then judges on its value
thresholds alone (see ``pipeline.components.evaluator``).
"""

from tfx import v1 as tfx
from tfx.utils import io_utils, path_utils

from pipeline import artifact_properties, model_versions


def newest_version_dir(serving_model_dir: str) -> str | None:
    """The newest served version's directory (model_versions.served_versions), if any."""
    versions = model_versions.served_versions(serving_model_dir)
    return model_versions.version_path(serving_model_dir, versions[-1]) if versions else None


@tfx.dsl.components.component
def LatestServedModel(  # noqa: N802 - TFX component names are class-like
    serving_model_dir: tfx.dsl.components.Parameter[str],
    model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
) -> None:
    """Emits the newest served version as a Model artifact, or an empty one marked absent."""
    source = newest_version_dir(serving_model_dir)
    model.set_int_custom_property(artifact_properties.BASELINE_FOUND, int(source is not None))
    if source is not None:
        io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
        model.set_string_custom_property(artifact_properties.SOURCE_VERSION_DIR, source)
