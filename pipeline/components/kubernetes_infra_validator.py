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
``DEFAULT_RESOURCES``) shape the pod. The claim is cluster configuration, so the step pod's
environment names it: ``TFXKFP_MODEL_PVC`` (claim name) and ``TFXKFP_MODEL_PVC_MOUNT_PATH``
(where the step pod mounts it); leave both unset when the pipeline root is on GCS.

RBAC: the step's service account needs, in the step's namespace::

    - apiGroups: [""]
      resources: ["pods"]
      verbs: ["create", "get", "list", "watch", "delete"]
    - apiGroups: [""]
      resources: ["pods/log"]
      verbs: ["get"]

and the step pod must reach the serving pod's IP on port 8500 (gRPC), so any NetworkPolicy
in that namespace has to allow it.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from absl import logging
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from tfx import types
from tfx.components.infra_validator import error_types, serving_bins
from tfx.components.infra_validator import executor as tfx_executor
from tfx.components.infra_validator.model_server_runners import base_runner
from tfx.dsl.components.base import executor_spec
from tfx.proto import infra_validator_pb2
from tfx.utils.model_paths import tf_serving_flavor

from pipeline import images
from pipeline.components.infra_validator_component import InfraValidatorComponent

SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# What TFX's own runner reads (KFP v1 sets it); KFP v2 does not, so it is optional here.
NAMESPACE_ENV = "KFP_NAMESPACE"
# Set on every KFP v2 step container through the downward API (metadata.name, metadata.uid).
POD_NAME_ENV = "KFP_POD_NAME"
POD_UID_ENV = "KFP_POD_UID"
HOSTNAME_ENV = "HOSTNAME"  # a pod's hostname is its name unless spec.hostname says otherwise
MODEL_PVC_ENV = "TFXKFP_MODEL_PVC"
MODEL_PVC_MOUNT_PATH_ENV = "TFXKFP_MODEL_PVC_MOUNT_PATH"

GRPC_PORT = 8500  # TFX's TF Serving client speaks gRPC
REST_PORT = 8501
CONTAINER_NAME = "tf-serving"
POD_NAME_PREFIX = "tfx-infraval-"
APP_LABELS = {
    "app.kubernetes.io/name": "tensorflow-serving",
    "app.kubernetes.io/component": "infra-validator",
    "app.kubernetes.io/part-of": "tfx-kfp-gke",
}
STEP_POD_UID_LABEL = "tfx-kfp-gke/step-pod-uid"
# A tiny model loads in TF Serving's baseline footprint (a few hundred MiB).
DEFAULT_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
DEFAULT_RUN_AS_USER = 1000
DEFAULT_RUN_AS_GROUP = 1000
# The backstop for a step that dies without deleting the pod; TFX's 24 hours would hold the
# pod's resources for a day.
DEFAULT_ACTIVE_DEADLINE_SECONDS = 1800
DEFAULT_POLL_INTERVAL_SECONDS = 2.0

_MODEL_VOLUME = "model"
_TMP_VOLUME = "tmp"
_TMP_SIZE_LIMIT = "64Mi"
_LOG_TAIL_LINES = 500
_DELETE_ATTEMPTS = 3
_MODEL_STATUS_POLL_SECONDS = 1
# Where the executor stages the model in TF Serving's layout: under a gs:// blessing, or
# on the claim (see staging_dir).
_STAGING_DIR = ".serving-model"
_CLAIM_STAGING_DIR = ".infra-validation"
_RBAC_HINT = (
    "the step's service account needs pods create/get/list/watch/delete and pods/log get "
    f"in this namespace (see {__name__})"
)
# What the runner asks of the API: (verb, resource, subresource).
_REQUIRED_ACCESS = (
    ("create", "pods", ""), ("get", "pods", ""), ("delete", "pods", ""), ("get", "pods", "log"),
)


class KubernetesServingError(RuntimeError):
    """The cluster or the configuration, not the model, stopped infra validation."""


@dataclass(frozen=True)
class StepPod:
    """The KFP step pod this code runs in: the serving pod's namespace and owner."""

    namespace: str
    name: str
    uid: str

    @classmethod
    def discover(
        cls,
        core_api: k8s_client.CoreV1Api,
        environ: Mapping[str, str] | None = None,
        namespace_file: str = SERVICE_ACCOUNT_NAMESPACE_FILE,
    ) -> StepPod:
        """The step pod, from KFP's environment, reading the pod only when its uid is unset."""
        environ = os.environ if environ is None else environ
        namespace = _namespace(environ, namespace_file)
        name = step_pod_name(environ)
        uid = environ.get(POD_UID_ENV)
        if not uid:
            try:
                uid = core_api.read_namespaced_pod(name=name, namespace=namespace).metadata.uid
            except ApiException as error:
                raise KubernetesServingError(
                    f"{POD_UID_ENV} is unset and reading pod {namespace}/{name} failed: "
                    f"{_api_message(error)}"
                ) from error
        return cls(namespace=namespace, name=name, uid=uid)


def step_pod_name(environ: Mapping[str, str] | None = None) -> str:
    """The name of the pod this step runs in, from KFP's environment or the hostname."""
    environ = os.environ if environ is None else environ
    name = environ.get(POD_NAME_ENV) or environ.get(HOSTNAME_ENV)
    if not name:
        raise KubernetesServingError(
            f"cannot tell which pod this step runs in: {POD_NAME_ENV} and {HOSTNAME_ENV} "
            "are unset"
        )
    return name


def _namespace(environ: Mapping[str, str], namespace_file: str) -> str:
    if environ.get(NAMESPACE_ENV):
        return environ[NAMESPACE_ENV]
    try:
        with open(namespace_file, encoding="utf-8") as file:
            namespace = file.read().strip()
    except FileNotFoundError:
        namespace = ""
    if not namespace:
        raise KubernetesServingError(
            f"cannot tell the namespace: {NAMESPACE_ENV} is unset and {namespace_file} is "
            "missing or empty (is this running in a pod with a service account?)"
        )
    return namespace


@dataclass(frozen=True)
class ModelVolume:
    """The PersistentVolumeClaim holding the pipeline root, and where the step mounts it."""

    claim_name: str
    mount_path: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ModelVolume | None:
        """The claim named by the step pod's environment; None when the root is on GCS."""
        environ = os.environ if environ is None else environ
        claim_name = environ.get(MODEL_PVC_ENV, "")
        mount_path = environ.get(MODEL_PVC_MOUNT_PATH_ENV, "")
        if not claim_name and not mount_path:
            return None
        if not claim_name or not posixpath.isabs(mount_path):
            raise KubernetesServingError(
                f"{MODEL_PVC_ENV} and {MODEL_PVC_MOUNT_PATH_ENV} go together: a claim name and "
                f"the absolute path the step pod mounts it at (got {claim_name!r}, {mount_path!r})"
            )
        return cls(claim_name=claim_name, mount_path=posixpath.normpath(mount_path))


def check_model_reachable(model_path: str, model_volume: ModelVolume | None) -> None:
    """Refuses a model location the serving pod could not read."""
    if model_path.startswith("gs://"):
        return
    if model_volume is not None and posixpath.isabs(model_path):
        inside = posixpath.commonpath([posixpath.normpath(model_path), model_volume.mount_path])
        if inside == model_volume.mount_path:
            return
    where = (
        f"under {model_volume.mount_path} (claim {model_volume.claim_name})"
        if model_volume
        else f"on a claim named by {MODEL_PVC_ENV} and {MODEL_PVC_MOUNT_PATH_ENV}"
    )
    raise KubernetesServingError(
        f"TF Serving cannot read {model_path}: the model must be on gs:// or {where}"
    )


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


def check_pinned(image: str) -> str:
    """The image reference, refused unless a digest or a fixed tag pins it."""
    if not images.is_pinned(image):
        raise KubernetesServingError(
            f"TF Serving image {image!r} is not pinned: set ServingSpec.tensorflow_serving.tags "
            "to a release such as '2.16.1' (or use digests)"
        )
    return image


def active_deadline_seconds(config: infra_validator_pb2.KubernetesConfig) -> int:
    """The serving pod's hard deadline: the configured one, else the project default."""
    seconds = config.active_deadline_seconds or DEFAULT_ACTIVE_DEADLINE_SECONDS
    if seconds < 0:
        raise KubernetesServingError(f"active_deadline_seconds must be positive, got {seconds}")
    return seconds


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
            message = _api_message(error) if isinstance(error, ApiException) else error
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


def _api_message(error: ApiException) -> str:
    """The API server's own explanation (its Status message), else the HTTP reason."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


def _env_var(env: infra_validator_pb2.EnvVar) -> k8s_client.V1EnvVar:
    if not env.name:
        raise KubernetesServingError("serving_pod_overrides.env entries need a name")
    if not env.HasField("value_from"):
        return k8s_client.V1EnvVar(name=env.name, value=env.value)
    if env.value or not env.value_from.HasField("secret_key_ref"):
        raise KubernetesServingError(
            f"serving_pod_overrides.env {env.name}: give a value or a secret_key_ref, not both"
        )
    secret = env.value_from.secret_key_ref
    return k8s_client.V1EnvVar(
        name=env.name,
        value_from=k8s_client.V1EnvVarSource(
            secret_key_ref=k8s_client.V1SecretKeySelector(name=secret.name, key=secret.key)
        ),
    )


def _resources(overrides: infra_validator_pb2.Resources) -> k8s_client.V1ResourceRequirements:
    if overrides.claims:
        raise KubernetesServingError("serving_pod_overrides.resources.claims is not supported")
    return k8s_client.V1ResourceRequirements(
        requests={**DEFAULT_RESOURCES["requests"], **overrides.requests},
        limits={**DEFAULT_RESOURCES["limits"], **overrides.limits},
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
        if serving_spec.WhichOneof("serving_platform") != "kubernetes":
            raise KubernetesServingError("ServingSpec.kubernetes must be set")
        if run_as_user <= 0 or run_as_group <= 0:
            raise KubernetesServingError("run_as_user and run_as_group must be non-zero uids")
        check_model_reachable(model_path, model_volume)
        try:
            _, model_name, _ = tf_serving_flavor.parse_model_path(
                model_path, serving_spec.model_name or None
            )
        except ValueError as error:
            raise KubernetesServingError(
                f"{model_path} is not in TF Serving's layout <base>/<model_name>/<version>: "
                f"{error}"
            ) from error
        self._core_api = core_api
        self._step_pod = step_pod
        self._poll_interval_seconds = poll_interval_seconds
        self._name = f"{POD_NAME_PREFIX}{secrets.token_hex(5)}"
        self._pod = self._build_pod(
            image=check_pinned(serving_binary.image),
            model_name=model_name,
            model_base_path=posixpath.dirname(model_path),
            config=serving_spec.kubernetes,
            model_volume=model_volume,
            run_as_user=run_as_user,
            run_as_group=run_as_group,
        )
        self._create_sent = False
        self._endpoint: str | None = None

    def __repr__(self) -> str:
        image = self._pod.spec.containers[0].image
        return f"KubernetesModelServerRunner({image}, pod {self._step_pod.namespace}/{self._name})"

    @property
    def pod(self) -> k8s_client.V1Pod:
        """The pod Start() creates."""
        return self._pod

    def _build_pod(
        self,
        *,
        image: str,
        model_name: str,
        model_base_path: str,
        config: infra_validator_pb2.KubernetesConfig,
        model_volume: ModelVolume | None,
        run_as_user: int,
        run_as_group: int,
    ) -> k8s_client.V1Pod:
        overrides = config.serving_pod_overrides
        volumes = [
            # TensorFlow and TF Serving may write scratch files to /tmp; the root stays read-only.
            k8s_client.V1Volume(
                name=_TMP_VOLUME,
                empty_dir=k8s_client.V1EmptyDirVolumeSource(size_limit=_TMP_SIZE_LIMIT),
            )
        ]
        mounts = [k8s_client.V1VolumeMount(name=_TMP_VOLUME, mount_path="/tmp")]
        if not model_base_path.startswith("gs://"):
            volumes.append(
                k8s_client.V1Volume(
                    name=_MODEL_VOLUME,
                    persistent_volume_claim=k8s_client.V1PersistentVolumeClaimVolumeSource(
                        claim_name=model_volume.claim_name, read_only=True
                    ),
                )
            )
            mounts.append(
                k8s_client.V1VolumeMount(
                    name=_MODEL_VOLUME, mount_path=model_volume.mount_path, read_only=True
                )
            )
        runtime_default = k8s_client.V1SeccompProfile(type="RuntimeDefault")
        container = k8s_client.V1Container(
            name=CONTAINER_NAME,
            image=image,
            # The binary itself rather than the image's entrypoint script: ports and model
            # location are then visible in the pod spec.
            command=["/usr/bin/tensorflow_model_server"],
            args=[
                f"--port={GRPC_PORT}",
                f"--rest_api_port={REST_PORT}",
                f"--model_name={model_name}",
                f"--model_base_path={model_base_path}",
            ],
            ports=[
                k8s_client.V1ContainerPort(name="grpc", container_port=GRPC_PORT),
                k8s_client.V1ContainerPort(name="http", container_port=REST_PORT),
            ],
            env=[_env_var(env) for env in overrides.env] or None,
            resources=_resources(overrides.resources),
            volume_mounts=mounts,
            security_context=k8s_client.V1SecurityContext(
                allow_privilege_escalation=False,
                capabilities=k8s_client.V1Capabilities(drop=["ALL"]),
                read_only_root_filesystem=True,
                run_as_non_root=True,
                run_as_user=run_as_user,
                run_as_group=run_as_group,
                seccomp_profile=runtime_default,
            ),
        )
        return k8s_client.V1Pod(
            api_version="v1",
            kind="Pod",
            metadata=k8s_client.V1ObjectMeta(
                name=self._name,
                namespace=self._step_pod.namespace,
                labels={**APP_LABELS, STEP_POD_UID_LABEL: self._step_pod.uid},
                annotations=dict(overrides.annotations) or None,
                # Kubernetes garbage-collects the serving pod when the step pod goes.
                owner_references=[
                    k8s_client.V1OwnerReference(
                        api_version="v1",
                        kind="Pod",
                        name=self._step_pod.name,
                        uid=self._step_pod.uid,
                    )
                ],
            ),
            spec=k8s_client.V1PodSpec(
                containers=[container],
                volumes=volumes,
                # A failed server is a failed attempt; TFX's executor does the retrying.
                restart_policy="Never",
                active_deadline_seconds=active_deadline_seconds(config),
                service_account_name=config.service_account_name or None,
                # TF Serving never calls the Kubernetes API; GKE Workload Identity needs no token.
                automount_service_account_token=False,
                security_context=k8s_client.V1PodSecurityContext(
                    run_as_non_root=True,
                    run_as_user=run_as_user,
                    run_as_group=run_as_group,
                    seccomp_profile=runtime_default,
                ),
            ),
        )

    def Start(self) -> None:  # noqa: N802 - TFX runner interface
        """Creates the pod; its name is chosen here, so Stop() can delete it whatever happens."""
        if self._create_sent:
            raise RuntimeError(f"{self!r} was already started; make a new runner to retry")
        self._create_sent = True
        namespace = self._step_pod.namespace
        try:
            self._core_api.create_namespaced_pod(namespace=namespace, body=self._pod)
        except ApiException as error:
            hint = f" ({_RBAC_HINT})" if error.status in (401, 403) else ""
            raise KubernetesServingError(
                f"creating pod {namespace}/{self._name} failed: {_api_message(error)}{hint}"
            ) from error
        logging.info("Created TF Serving pod %s/%s.", namespace, self._name)

    def WaitUntilRunning(self, deadline: float) -> None:  # noqa: N802 - TFX runner interface
        """Returns once the pod runs and has an IP; raises if it ends or the deadline passes."""
        if not self._create_sent:
            raise RuntimeError("Start() first")
        namespace = self._step_pod.namespace
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
                        f"reading pod {namespace}/{self._name} failed: {_api_message(error)} "
                        f"({_RBAC_HINT})"
                    ) from error
                state = f"read failed: {_api_message(error)}"
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
                namespace=self._step_pod.namespace,
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
        namespace = self._step_pod.namespace
        for attempt in range(1, _DELETE_ATTEMPTS + 1):
            try:
                self._core_api.delete_namespaced_pod(name=self._name, namespace=namespace)
            except ApiException as error:
                if error.status == 404:
                    return
                failure = _api_message(error)
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


class KubernetesInfraValidatorExecutor(tfx_executor.Executor):
    """TFX's InfraValidator executor with TF Serving in a pod beside the KFP v2 step.

    Configuration problems (platform, unpinned image, deadline, namespace, model location,
    the service account's permissions) fail the step before the first attempt: TFX's retry
    loop would otherwise record them as a model that is not servable.
    """

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
        self._model_volume = ModelVolume.from_environment()
        self._staging_dir = staging_dir(blessing.uri, self._model_volume, step_pod_name())
        self._core_api = self._connect()
        self._step_pod = StepPod.discover(self._core_api)
        check_access(self._core_api.api_client, self._step_pod.namespace)
        super()._Do(
            blessing=blessing, serving_spec=serving_spec, validation_spec=validation_spec,
            **kwargs,
        )

    def _get_tmp_dir(self) -> str:
        """Where TFX copies the model into TF Serving's layout: see ``staging_dir``.

        TFX deletes this directory when validation ends.
        """
        return self._staging_dir

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
        runner = KubernetesModelServerRunner(
            model_path, serving_binary, serving_spec, self._core_api, self._step_pod,
            model_volume=self._model_volume,
        )
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
