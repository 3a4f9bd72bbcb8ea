"""The InfraValidator component shape, with the executor left to each flavour.

TFX's Kubeflow V2 compiler refuses ``tfx.components.InfraValidator`` and every subclass of
it (tfx 1.16, orchestration/kubeflow/v2/step_builder.py), so the flavours derive from
BaseComponent with InfraValidator's own spec instead: same inputs, parameters and
``InfraBlessing`` output, hence the same wiring and the same Pusher gate everywhere.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts, standard_component_specs


class InfraValidatorComponent(base_component.BaseComponent):
    """Base of the local and Kubernetes flavours; subclasses set EXECUTOR_SPEC."""

    SPEC_CLASS = standard_component_specs.InfraValidatorSpec

    def __init__(
        self,
        model: types.BaseChannel,
        serving_spec: infra_validator_pb2.ServingSpec,
        examples: types.BaseChannel | None = None,
        request_spec: infra_validator_pb2.RequestSpec | None = None,
        validation_spec: infra_validator_pb2.ValidationSpec | None = None,
    ):
        super().__init__(
            spec=standard_component_specs.InfraValidatorSpec(
                model=model,
                examples=examples,
                blessing=types.Channel(type=standard_artifacts.InfraBlessing),
                serving_spec=serving_spec,
                request_spec=request_spec,
                validation_spec=validation_spec,
            )
        )
