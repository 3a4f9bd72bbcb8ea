"""TF Serving in one pod beside the KFP step, behind TFX's model-server runner interface.

TFX's InfraValidator drives a runner through one attempt: ``Start``, ``WaitUntilRunning``,
``GetEndpoint`` for its gRPC client, ``GetLogs`` when something failed, and ``Stop`` in a
``finally``. This runner does that with the pod serving_pod builds, through the Kubernetes API
with the step's service account; ``check_access`` asks up front whether that account may.
"""

from __future__ import annotations

import time

import urllib3
from absl import logging
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from tfx.components.infra_validator import error_types, serving_bins
from tfx.components.infra_validator.model_server_runners import base_runner
from tfx.proto import infra_validator_pb2

from pipeline.components.kubernetes_errors import KubernetesServingError, api_message
from pipeline.components.serving_pod import (
    CONTAINER_NAME,
    DEFAULT_RUN_AS_GROUP,
    DEFAULT_RUN_AS_USER,
    GRPC_PORT,
    build_serving_pod,
)
from pipeline.components.step_pod import ModelVolume, StepPod

DEFAULT_POLL_INTERVAL_SECONDS = 2.0

_LOG_TAIL_LINES = 500
_DELETE_ATTEMPTS = 3
# The component module's docstring lists the Role rules.
_RBAC_HINT = (
    "the step's service account needs pods create/get/list/watch/delete and pods/log get "
    "in this namespace (see pipeline.components.kubernetes_infra_validator)"
)
# What the runner asks of the API: (verb, resource, subresource).
_REQUIRED_ACCESS = (
    ("create", "pods", ""), ("get", "pods", ""), ("delete", "pods", ""), ("get", "pods", "log"),
)


def check_access(api_client: k8s_client.ApiClient, namespace: str) -> None:
    """Refuses to validate when the step's service account may not manage the serving pod.

    Asked up front because a refused request inside TFX's retry loop is recorded as a model
    that failed validation, once per try, and the step then ends "not blessed".
    """
    authorization = k8s_client.AuthorizationV1Api(api_client)
    missing = []
    for verb, resource, subresource in _REQUIRED_ACCESS:
        review = k8s_client.V1SelfSubjectAccessReview(
            spec=k8s_client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s_client.V1ResourceAttributes(
                    namespace=namespace, verb=verb, resource=resource,
                    subresource=subresource or None,
                )
            )
        )
        try:
            allowed = authorization.create_self_subject_access_review(review).status.allowed
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            # The requests themselves will tell, if the cluster refuses this question.
            message = api_message(error) if isinstance(error, ApiException) else error
            logging.warning("Could not check the step's permissions: %s", message)
            return
        if not allowed:
            missing.append(f"{verb} {resource}/{subresource}".rstrip("/"))
    if missing:
        raise KubernetesServingError(
            f"the step's service account may not {', '.join(missing)} in namespace "
            f"{namespace}: bind it to a Role with pods create/get/list/watch/delete and "
            "pods/log get there (helm/kfp's pipeline-runner Role has them)"
        )


def _describe(pod: k8s_client.V1Pod) -> str:
    """Why a pod is where it is: phase, reason, unmet conditions, each container's state."""
    status = pod.status or k8s_client.V1PodStatus()
    parts = [f"phase={status.phase}"]
    if status.reason or status.message:
        parts.append(f"{status.reason}: {status.message}")
    for condition in status.conditions or []:
        if condition.status == "False" and condition.message:  # e.g. Unschedulable
            parts.append(f"{condition.type}: {condition.message}")
    for container in status.container_statuses or []:
        state = container.state
        if state and state.waiting:
            waiting = state.waiting
            parts.append(f"{container.name} waiting: {waiting.reason} {waiting.message or ''}")
        elif state and state.terminated:
            terminated = state.terminated
            parts.append(
                f"{container.name} exited {terminated.exit_code} ({terminated.reason}) "
                f"{terminated.message or ''}".rstrip()
            )
    return "; ".join(parts)


class KubernetesModelServerRunner(base_runner.BaseModelServerRunner):
    """TF Serving in one pod owned by the step pod, under the ``restricted`` Pod Security."""

    def __init__(
        self,
        model_path: str,
        serving_binary: serving_bins.TensorFlowServing,
        serving_spec: infra_validator_pb2.ServingSpec,
        core_api: k8s_client.CoreV1Api,
        step_pod: StepPod,
        *,
        model_volume: ModelVolume | None = None,
        run_as_user: int = DEFAULT_RUN_AS_USER,
        run_as_group: int = DEFAULT_RUN_AS_GROUP,
        poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS,
    ):
        """Checks everything it can before any request, and builds the pod to create.

        Args:
          model_path: the model in TF Serving's layout, ``<base>/<model_name>/<version>``.
          serving_binary: the TF Serving image to validate with (one per tag or digest).
          serving_spec: TFX's ServingSpec; ``kubernetes`` and ``model_name`` are read here.
          core_api: the Kubernetes client.
          step_pod: the pod this step runs in; the serving pod's namespace and owner.
          model_volume: the claim to mount when the model is not on gs://.
          run_as_user: the non-root uid TF Serving runs as.
          run_as_group: its gid.
          poll_interval_seconds: how often WaitUntilRunning reads the pod.
        """
        self._pod = build_serving_pod(
            model_path=model_path,
            image=serving_binary.image,
            serving_spec=serving_spec,
            step_pod=step_pod,
            model_volume=model_volume,
            run_as_user=run_as_user,
            run_as_group=run_as_group,
        )
        self._name = self._pod.metadata.name
        self._namespace = step_pod.namespace
        self._core_api = core_api
        self._poll_interval_seconds = poll_interval_seconds
        self._create_sent = False
        self._endpoint: str | None = None

    def __repr__(self) -> str:
        image = self._pod.spec.containers[0].image
        return f"KubernetesModelServerRunner({image}, pod {self._namespace}/{self._name})"

    @property
    def pod(self) -> k8s_client.V1Pod:
        """The pod Start() creates."""
        return self._pod

    def Start(self) -> None:  # noqa: N802 - TFX runner interface
        """Creates the pod; its name is known beforehand, so Stop() can delete it in any case."""
        if self._create_sent:
            raise RuntimeError(f"{self!r} was already started; make a new runner to retry")
        self._create_sent = True
        namespace = self._namespace
        try:
            self._core_api.create_namespaced_pod(namespace=namespace, body=self._pod)
        except ApiException as error:
            hint = f" ({_RBAC_HINT})" if error.status in (401, 403) else ""
            raise KubernetesServingError(
                f"creating pod {namespace}/{self._name} failed: {api_message(error)}{hint}"
            ) from error
        logging.info("Created TF Serving pod %s/%s.", namespace, self._name)

    def WaitUntilRunning(self, deadline: float) -> None:  # noqa: N802 - TFX runner interface
        """Returns once the pod runs and has an IP; raises if it ends or the deadline passes."""
        if not self._create_sent:
            raise RuntimeError("Start() first")
        namespace = self._namespace
        while True:
            try:
                pod = self._core_api.read_namespaced_pod(name=self._name, namespace=namespace)
            except ApiException as error:
                if error.status == 404:
                    raise error_types.JobAborted(
                        f"pod {namespace}/{self._name} is gone (deleted or evicted)"
                    ) from error
                if error.status in (401, 403):
                    raise KubernetesServingError(
                        f"reading pod {namespace}/{self._name} failed: {api_message(error)} "
                        f"({_RBAC_HINT})"
                    ) from error
                state = f"read failed: {api_message(error)}"
            except urllib3.exceptions.HTTPError as error:
                state = f"read failed: {error}"
            else:
                phase = pod.status.phase if pod.status else None
                if phase == "Running" and pod.status.pod_ip:
                    ip = pod.status.pod_ip
                    self._endpoint = f"[{ip}]:{GRPC_PORT}" if ":" in ip else f"{ip}:{GRPC_PORT}"
                    return
                state = _describe(pod)
                if phase in ("Failed", "Succeeded"):
                    raise error_types.JobAborted(
                        f"TF Serving pod {namespace}/{self._name} stopped: {state}"
                    )
            remaining = deadline - time.time()
            if remaining <= 0:
                raise error_types.DeadlineExceeded(
                    f"TF Serving pod {namespace}/{self._name} not running by the deadline: {state}"
                )
            time.sleep(min(self._poll_interval_seconds, remaining))

    def GetEndpoint(self) -> str:  # noqa: N802 - TFX runner interface
        """``<pod IP>:8500``, TF Serving's gRPC port, once WaitUntilRunning has returned."""
        if self._endpoint is None:
            raise AssertionError("no endpoint before WaitUntilRunning() returns")
        return self._endpoint

    def GetLogs(self) -> str | None:  # noqa: N802 - TFX runner interface
        """The end of TF Serving's log, or None when there is none to read."""
        if not self._create_sent:
            return None
        try:
            logs = self._core_api.read_namespaced_pod_log(
                name=self._name,
                namespace=self._namespace,
                container=CONTAINER_NAME,
                tail_lines=_LOG_TAIL_LINES,
            )
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            logging.info("No TF Serving log for %s: %s", self._name, error)
            return None
        return logs or None

    def Stop(self) -> None:  # noqa: N802 - TFX runner interface
        """Deletes the pod; never raises, as it runs in ``finally`` after any failure.

        A pod that is already gone counts as deleted. If the API keeps failing, the owner
        reference and ``activeDeadlineSeconds`` still end the pod.
        """
        if not self._create_sent:
            return
        namespace = self._namespace
        for attempt in range(1, _DELETE_ATTEMPTS + 1):
            try:
                self._core_api.delete_namespaced_pod(name=self._name, namespace=namespace)
            except ApiException as error:
                if error.status == 404:
                    return
                failure = api_message(error)
            except urllib3.exceptions.HTTPError as error:
                failure = str(error)
            else:
                logging.info("Deleted TF Serving pod %s/%s.", namespace, self._name)
                return
            if attempt < _DELETE_ATTEMPTS:
                time.sleep(self._poll_interval_seconds)
        logging.warning(
            "Could not delete pod %s/%s (%s); it ends with its step pod or its deadline, or "
            "run: kubectl delete pod --namespace %s %s",
            namespace, self._name, failure, namespace, self._name,
        )
