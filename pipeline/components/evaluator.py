"""TFX's Evaluator, told apart "no baseline yet" from a baseline model, and readable from
ML Metadata.

With TFX's Resolver an absent baseline is an empty input. A component always produces its
output artifact, so ``LatestServedModel`` marks an empty one instead; this executor drops
such a baseline before TFX's Evaluator sees it, and the model is judged on the value
thresholds alone, as TFX does on a first run.

TFX keeps the metrics and the failed thresholds in files under the artifacts' URIs, which on
a cluster are in an object store. The executor also records them on the artifacts, as
custom properties: the candidate's overall metrics on the evaluation, the failed thresholds
on a blessing that was refused. ML Metadata then tells the verdict and why (``tfxkfp runs
show``; the KFP UI shows them with the artifact).
"""

from typing import Any

from tfx import types
from tfx.components import Evaluator
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from pipeline import artifact_properties
from pipeline.run_summary import evaluator_failures, read_metrics


def _is_placeholder(artifact: types.Artifact) -> bool:
    return (
        artifact.has_custom_property(artifact_properties.BASELINE_FOUND)
        and artifact.get_int_custom_property(artifact_properties.BASELINE_FOUND) == 0
    )


class BaselineAwareEvaluatorExecutor(tfx_evaluator_executor.Executor):
    def Do(  # noqa: N802 - TFX executor interface
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = [a for a in input_dict.get(key, []) if not _is_placeholder(a)]
        inputs = {name: value for name, value in input_dict.items() if name != key}
        if baselines:
            inputs[key] = baselines
        super().Do(inputs, output_dict, exec_properties)
        [evaluation] = output_dict[standard_component_specs.EVALUATION_KEY]
        for name, value in read_metrics(evaluation.uri)["overall"].items():
            if isinstance(value, int):
                evaluation.set_int_custom_property(name, value)
            else:
                evaluation.set_float_custom_property(name, value)
        [blessing] = output_dict[standard_component_specs.BLESSING_KEY]
        if blessing.get_int_custom_property(artifact_properties.BLESSED) == 0:
            blessing.set_string_custom_property(
                artifact_properties.EVALUATOR_FAILURES,
                "\n".join(evaluator_failures(evaluation.uri)))


class BaselineAwareEvaluator(Evaluator):
    """TFX's Evaluator component with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BaselineAwareEvaluatorExecutor)
