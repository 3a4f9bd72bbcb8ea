"""InfraValidator's Kubernetes flavour: TF Serving in a pod next to the KFP v2 step.

TFX's own Kubernetes runner cannot run in a KFP v2 step: it needs ``KFP_NAMESPACE``, which
KFP v2 step pods do not set (they set ``KFP_POD_NAME`` and ``KFP_POD_UID`` through the
downward API), and its TF Serving pod has no security context, so a namespace that enforces
the ``restricted`` Pod Security Standard refuses it. This flavour keeps TFX's component spec
(through InfraValidatorComponent: TFX's KFP v2 compiler refuses InfraValidator subclasses),
request building and gRPC client, and swaps what starts the model server:

- the serving pod runs the official ``tensorflow/serving`` image at a pinned tag, under the
  ``restricted`` profile, with requests and limits and a hard ``activeDeadlineSeconds``;
- it is owned by the step pod, so Kubernetes deletes it with the step even if the step is
  killed before it can clean up;
- it reads the model from ``gs://`` (TF Serving reads GCS itself; give the pod a Workload
  Identity service account with ``ServingSpec.kubernetes.service_account_name``) or, on
  kind/minikube, from a copy on the PersistentVolumeClaim every step mounts, mounted
  read-only at the same path (see ``staging_dir``).

Settings come from TFX's ``ServingSpec``: ``tensorflow_serving.tags`` (or ``digests``)
choose the image; ``kubernetes.service_account_name``, ``kubernetes.active_deadline_seconds``
and ``kubernetes.serving_pod_overrides`` (annotations, env, resources merged over
``serving_pod.DEFAULT_RESOURCES``) shape the pod. The claim is cluster configuration, so the
step pod's environment names it: ``TFXKFP_MODEL_PVC`` (claim name) and
``TFXKFP_MODEL_PVC_MOUNT_PATH`` (where the step pod mounts it); leave both unset when the
pipeline root is on GCS.

RBAC: the step's service account needs, in the step's namespace::

    - apiGroups: [""]
      resources: ["pods"]
      verbs: ["create", "get", "list", "watch", "delete"]
    - apiGroups: [""]
      resources: ["pods/log"]
      verbs: ["get"]

and the step pod must reach the serving pod's IP on port 8500 (gRPC), so any NetworkPolicy
in that namespace has to allow it.

The parts, one module each: step_pod (the pod this step runs in), serving_pod (the TF
Serving pod's spec), kubernetes_serving_runner (creating, watching and deleting that pod);
this module holds the executor and the component.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from typing import Any

from absl import logging
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from tfx import types
from tfx.components.infra_validator import executor as tfx_executor
from tfx.components.infra_validator import serving_bins
from tfx.dsl.components.base import executor_spec
from tfx.proto import infra_validator_pb2

from pipeline.components.infra_validator_component import InfraValidatorComponent
from pipeline.components.kubernetes_errors import KubernetesServingError
from pipeline.components.kubernetes_serving_runner import (
    KubernetesModelServerRunner,
    check_access,
)
from pipeline.components.serving_pod import active_deadline_seconds, check_pinned
from pipeline.components.step_pod import (
    MODEL_PVC_ENV,
    MODEL_PVC_MOUNT_PATH_ENV,
    ModelVolume,
    StepPod,
    step_pod_name,
)

_MODEL_STATUS_POLL_SECONDS = 1
# Where the executor stages the model in TF Serving's layout: under a gs:// blessing, or
# on the claim (see staging_dir).
_STAGING_DIR = ".serving-model"
_CLAIM_STAGING_DIR = ".infra-validation"


def staging_dir(blessing_uri: str, model_volume: ModelVolume | None, pod_name: str) -> str:
    """Where the model is copied into TF Serving's layout, somewhere the serving pod reads.

    Not the step's temp dir: that is in the step pod's own /tmp. With a ``gs://`` pipeline
    root, beside the blessing. Otherwise the step holds its artifacts in the KFP launcher's
    local copy of the object store, so the copy goes onto the claim, in a hidden directory
    of its own that TF Serving's deployment never scans.
    """
    if blessing_uri.startswith("gs://"):
        return posixpath.join(blessing_uri, _STAGING_DIR)
    if model_volume is None:
        raise KubernetesServingError(
            f"TF Serving cannot read {blessing_uri}: the pipeline root must be on gs://, or "
            f"{MODEL_PVC_ENV} and {MODEL_PVC_MOUNT_PATH_ENV} must name a claim to stage on"
        )
    return posixpath.join(model_volume.mount_path, _CLAIM_STAGING_DIR, pod_name)


def _check_configuration(
    serving_spec: infra_validator_pb2.ServingSpec,
    validation_spec: infra_validator_pb2.ValidationSpec,
) -> None:
    """Refuses a ServingSpec this flavour cannot validate with, whatever the model."""
    if serving_spec.WhichOneof("serving_platform") != "kubernetes":
        raise KubernetesServingError(
            "KubernetesInfraValidator needs ServingSpec.kubernetes, got "
            f"{serving_spec.WhichOneof('serving_platform')}"
        )
    binaries = serving_bins.parse_serving_binaries(serving_spec)
    if not binaries:
        # TFX would bless the model without starting any server.
        raise KubernetesServingError("ServingSpec.tensorflow_serving names no tag or digest")
    for binary in binaries:
        check_pinned(binary.image)
    deadline = active_deadline_seconds(serving_spec.kubernetes)
    if deadline <= validation_spec.max_loading_time_seconds:
        raise KubernetesServingError(
            f"active_deadline_seconds ({deadline}) must exceed max_loading_time_seconds "
            f"({validation_spec.max_loading_time_seconds})"
        )


@dataclass(frozen=True)
class _ServingPlacement:
    """Where one execution's serving pods run and read the model, found before any attempt."""

    core_api: k8s_client.CoreV1Api
    step_pod: StepPod
    model_volume: ModelVolume | None
    staging_dir: str

    def runner(
        self,
        model_path: str,
        serving_binary: serving_bins.TensorFlowServing,
        serving_spec: infra_validator_pb2.ServingSpec,
    ) -> KubernetesModelServerRunner:
        """A runner for one attempt: a new pod in the step pod's namespace."""
        return KubernetesModelServerRunner(
            model_path, serving_binary, serving_spec, self.core_api, self.step_pod,
            model_volume=self.model_volume,
        )


class KubernetesInfraValidatorExecutor(tfx_executor.Executor):
    """TFX's InfraValidator executor with TF Serving in a pod beside the KFP v2 step.

    Configuration problems (platform, unpinned image, deadline, namespace, model location,
    the service account's permissions) fail the step before the first attempt: TFX's retry
    loop would otherwise record them as a model that is not servable.

    TFX's ``Executor._Do`` builds the requests, stages the model, retries and writes the
    blessing; it is reused as it is. What it cannot be told is where the serving pod goes:
    it calls two hooks with fixed arguments, so ``_Do`` finds that out first and keeps it in
    ``self._placement`` (this class's only state) for them:

    - ``_get_tmp_dir`` (BaseExecutor), where TFX's ``_PrepareModelPath`` copies the model into
      TF Serving's layout and which it deletes afterwards: the step's own temp dir would be
      out of the serving pod's reach;
    - ``_ValidateOnce``, one attempt: TFX's version creates TFX's own runner through a module
      function, ``_create_model_server_runner``, that no subclass can replace.
    """

    _placement: _ServingPlacement  # set by _Do before TFX's validation loop calls the hooks

    def _connect(self) -> k8s_client.CoreV1Api:
        """A client from the pod's service account, else from KUBECONFIG (a laptop)."""
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
        return k8s_client.CoreV1Api(k8s_client.ApiClient(configuration))

    def _Do(  # noqa: N802 - TFX executor hook
        self,
        *,
        blessing: types.Artifact,
        serving_spec: infra_validator_pb2.ServingSpec,
        validation_spec: infra_validator_pb2.ValidationSpec,
        **kwargs: Any,
    ) -> None:
        """Checks the configuration and finds the step pod, then runs TFX's validation."""
        _check_configuration(serving_spec, validation_spec)
        self._placement = self._place(blessing)
        super()._Do(
            blessing=blessing, serving_spec=serving_spec, validation_spec=validation_spec,
            **kwargs,
        )

    def _place(self, blessing: types.Artifact) -> _ServingPlacement:
        """The claim, staging directory and step pod, checked before any pod is asked for."""
        model_volume = ModelVolume.from_environment()
        staging = staging_dir(blessing.uri, model_volume, step_pod_name())
        core_api = self._connect()
        step_pod = StepPod.discover(core_api)
        check_access(core_api.api_client, step_pod.namespace)
        return _ServingPlacement(
            core_api=core_api, step_pod=step_pod, model_volume=model_volume,
            staging_dir=staging,
        )

    def _get_tmp_dir(self) -> str:
        """Where TFX copies the model into TF Serving's layout: see ``staging_dir``.

        TFX deletes this directory when validation ends.
        """
        return self._placement.staging_dir

    def _ValidateOnce(  # noqa: N802 - TFX executor hook
        self,
        model_path: str,
        serving_binary: serving_bins.TensorFlowServing,
        serving_spec: infra_validator_pb2.ServingSpec,
        validation_spec: infra_validator_pb2.ValidationSpec,
        requests: list[Any],
    ) -> None:
        """One attempt: serve in a new pod, wait for the model, send the requests, delete."""
        deadline = time.time() + validation_spec.max_loading_time_seconds
        runner = self._placement.runner(model_path, serving_binary, serving_spec)
        try:
            logging.info("Starting %r.", runner)
            runner.Start()
            runner.WaitUntilRunning(deadline)
            client = serving_binary.MakeClient(runner.GetEndpoint())
            client.WaitUntilModelLoaded(deadline, polling_interval_sec=_MODEL_STATUS_POLL_SECONDS)
            if requests:
                client.SendRequests(requests)
        except Exception:
            logs = runner.GetLogs()
            logging.error("TF Serving log (%r):\n%s", runner, logs or "(none)")
            raise
        finally:
            runner.Stop()


class KubernetesInfraValidator(InfraValidatorComponent):
    """InfraValidator with TF Serving in a pod beside the KFP v2 step."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(KubernetesInfraValidatorExecutor)
