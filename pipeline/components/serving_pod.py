"""The TF Serving pod the Kubernetes InfraValidator creates for one validation attempt.

Only the pod's spec, as a ``V1Pod``; creating, watching and deleting it is
kubernetes_serving_runner's job. The pod:

- runs the official ``tensorflow/serving`` image at a pinned tag or digest, the server binary
  itself with its ports and model location in the pod spec;
- passes the ``restricted`` Pod Security Standard (non-root, no privilege escalation, every
  capability dropped, RuntimeDefault seccomp, read-only root filesystem with a small /tmp);
- has requests and limits (``DEFAULT_RESOURCES``, overridable) and a hard
  ``activeDeadlineSeconds``, and is owned by the step pod, so it cannot outlive the step for
  long even if the step is killed before it deletes the pod;
- reads the model from ``gs://`` itself, or from the step pod's claim, mounted read-only at
  the step pod's mount path so that the model's path is the same in both pods.

Settings come from TFX's ``ServingSpec.kubernetes``: ``service_account_name``,
``active_deadline_seconds`` and ``serving_pod_overrides`` (annotations, env, resources).
"""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Mapping

from kubernetes import client as k8s_client
from tfx.proto import infra_validator_pb2
from tfx.utils.model_paths import tf_serving_flavor

from pipeline import images
from pipeline.components.kubernetes_errors import KubernetesServingError
from pipeline.components.step_pod import (
    MODEL_PVC_ENV,
    MODEL_PVC_MOUNT_PATH_ENV,
    ModelVolume,
    StepPod,
)

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

_MODEL_VOLUME = "model"
_TMP_VOLUME = "tmp"
_TMP_SIZE_LIMIT = "64Mi"


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


def build_serving_pod(
    *,
    model_path: str,
    image: str,
    serving_spec: infra_validator_pb2.ServingSpec,
    step_pod: StepPod,
    model_volume: ModelVolume | None,
    run_as_user: int,
    run_as_group: int,
) -> k8s_client.V1Pod:
    """A new TF Serving pod, with a fresh name, refused before any request if it cannot work.

    Args:
      model_path: the model in TF Serving's layout, ``<base>/<model_name>/<version>``.
      image: the TF Serving image; it must be pinned.
      serving_spec: TFX's ServingSpec; ``kubernetes`` and ``model_name`` are read here.
      step_pod: the pod this step runs in; the serving pod's namespace and owner.
      model_volume: the claim to mount when the model is not on gs://.
      run_as_user: the non-root uid TF Serving runs as.
      run_as_group: its gid.
    """
    if serving_spec.WhichOneof("serving_platform") != "kubernetes":
        raise KubernetesServingError("ServingSpec.kubernetes must be set")
    if run_as_user <= 0 or run_as_group <= 0:
        raise KubernetesServingError("run_as_user and run_as_group must be non-zero uids")
    check_model_reachable(model_path, model_volume)
    model_name = _model_name(model_path, serving_spec.model_name)
    name = f"{POD_NAME_PREFIX}{secrets.token_hex(5)}"
    image = check_pinned(image)
    config = serving_spec.kubernetes
    model_base_path = posixpath.dirname(model_path)
    # TF Serving reads gs:// itself; anything else is on the claim (check_model_reachable).
    model_claim = None if model_base_path.startswith("gs://") else model_volume
    container = _container(
        image=image,
        model_name=model_name,
        model_base_path=model_base_path,
        overrides=config.serving_pod_overrides,
        model_claim=model_claim,
        run_as_user=run_as_user,
        run_as_group=run_as_group,
    )
    return k8s_client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=_metadata(name, step_pod, config.serving_pod_overrides.annotations),
        spec=k8s_client.V1PodSpec(
            containers=[container],
            volumes=_volumes(model_claim),
            # A failed server is a failed attempt; TFX's executor does the retrying.
            restart_policy="Never",
            active_deadline_seconds=active_deadline_seconds(config),
            service_account_name=config.service_account_name or None,
            # TF Serving never calls the Kubernetes API; GKE Workload Identity needs no token.
            automount_service_account_token=False,
            security_context=_pod_security_context(run_as_user, run_as_group),
        ),
    )


def _model_name(model_path: str, expected: str) -> str:
    try:
        _, model_name, _ = tf_serving_flavor.parse_model_path(model_path, expected or None)
    except ValueError as error:
        raise KubernetesServingError(
            f"{model_path} is not in TF Serving's layout <base>/<model_name>/<version>: "
            f"{error}"
        ) from error
    return model_name


def _metadata(
    name: str, step_pod: StepPod, annotations: Mapping[str, str]
) -> k8s_client.V1ObjectMeta:
    return k8s_client.V1ObjectMeta(
        name=name,
        namespace=step_pod.namespace,
        labels={**APP_LABELS, STEP_POD_UID_LABEL: step_pod.uid},
        annotations=dict(annotations) or None,
        # Kubernetes garbage-collects the serving pod when the step pod goes.
        owner_references=[
            k8s_client.V1OwnerReference(
                api_version="v1", kind="Pod", name=step_pod.name, uid=step_pod.uid
            )
        ],
    )


def _volumes(model_claim: ModelVolume | None) -> list[k8s_client.V1Volume]:
    volumes = [
        # TensorFlow and TF Serving may write scratch files to /tmp; the root stays read-only.
        k8s_client.V1Volume(
            name=_TMP_VOLUME,
            empty_dir=k8s_client.V1EmptyDirVolumeSource(size_limit=_TMP_SIZE_LIMIT),
        )
    ]
    if model_claim is not None:
        volumes.append(
            k8s_client.V1Volume(
                name=_MODEL_VOLUME,
                persistent_volume_claim=k8s_client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=model_claim.claim_name, read_only=True
                ),
            )
        )
    return volumes


def _volume_mounts(model_claim: ModelVolume | None) -> list[k8s_client.V1VolumeMount]:
    mounts = [k8s_client.V1VolumeMount(name=_TMP_VOLUME, mount_path="/tmp")]
    if model_claim is not None:
        # At the step pod's mount path, so the model's path means the same in both pods.
        mounts.append(
            k8s_client.V1VolumeMount(
                name=_MODEL_VOLUME, mount_path=model_claim.mount_path, read_only=True
            )
        )
    return mounts


def _container(
    *,
    image: str,
    model_name: str,
    model_base_path: str,
    overrides: infra_validator_pb2.PodOverrides,
    model_claim: ModelVolume | None,
    run_as_user: int,
    run_as_group: int,
) -> k8s_client.V1Container:
    return k8s_client.V1Container(
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
        volume_mounts=_volume_mounts(model_claim),
        security_context=_container_security_context(run_as_user, run_as_group),
    )


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


def _container_security_context(
    run_as_user: int, run_as_group: int
) -> k8s_client.V1SecurityContext:
    """What the ``restricted`` Pod Security Standard asks of a container, and a read-only root."""
    return k8s_client.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s_client.V1Capabilities(drop=["ALL"]),
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=run_as_user,
        run_as_group=run_as_group,
        seccomp_profile=k8s_client.V1SeccompProfile(type="RuntimeDefault"),
    )


def _pod_security_context(run_as_user: int, run_as_group: int) -> k8s_client.V1PodSecurityContext:
    """The container's identity and seccomp profile, repeated at pod level."""
    return k8s_client.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=run_as_user,
        run_as_group=run_as_group,
        seccomp_profile=k8s_client.V1SeccompProfile(type="RuntimeDefault"),
    )
