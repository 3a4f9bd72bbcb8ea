"""How the Kubernetes InfraValidator reports a cluster or configuration problem.

One error type for every module of that flavour (step_pod, serving_pod,
kubernetes_serving_runner, kubernetes_infra_validator), so that the KFP step entry point
(pipeline/runners/kubeflow/step.py) can print any of them as one line instead of a traceback.
"""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException


class KubernetesServingError(RuntimeError):
    """The cluster or the configuration, not the model, stopped infra validation."""


def api_message(error: ApiException) -> str:
    """The API server's own explanation (its Status message), else the HTTP reason."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"
