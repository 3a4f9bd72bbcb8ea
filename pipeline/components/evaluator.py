"""TFX's Evaluator, told apart "no baseline yet" from a baseline model.

With TFX's Resolver an absent baseline is an empty input. A component always produces its
output artifact, so ``LatestServedModel`` marks an empty one instead; this executor drops
such a baseline before TFX's Evaluator sees it, and the model is judged on the value
thresholds alone, as TFX does on a first run.
"""

from typing import Any

from tfx import types
from tfx.components import Evaluator
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from pipeline.artifact_properties import BASELINE_FOUND


def _is_placeholder(artifact: types.Artifact) -> bool:
    return (
        artifact.has_custom_property(BASELINE_FOUND)
        and artifact.get_int_custom_property(BASELINE_FOUND) == 0
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


class BaselineAwareEvaluator(Evaluator):
    """TFX's Evaluator component with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BaselineAwareEvaluatorExecutor)
