"""The KFP step pod the Kubernetes InfraValidator runs in, found from its environment.

The serving pod goes into the step pod's namespace and is owned by it, and when the model is
not on ``gs://`` it mounts the claim the step pod mounts. KFP v2 step pods do not set TFX's
``KFP_NAMESPACE``; they set ``KFP_POD_NAME`` and ``KFP_POD_UID`` through the downward API, and
the service account mount names the namespace. The claim is cluster configuration that the
compiled pipeline puts in the step's environment (pipeline/runners/kubeflow/compiler.py):
``TFXKFP_MODEL_PVC`` (claim name) and ``TFXKFP_MODEL_PVC_MOUNT_PATH`` (where the step pod
mounts it); both are unset when the pipeline root is on GCS.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from pipeline.components.kubernetes_errors import KubernetesServingError, api_message

SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# What TFX's own runner reads (KFP v1 sets it); KFP v2 does not, so it is optional here.
NAMESPACE_ENV = "KFP_NAMESPACE"
# Set on every KFP v2 step container through the downward API (metadata.name, metadata.uid).
POD_NAME_ENV = "KFP_POD_NAME"
POD_UID_ENV = "KFP_POD_UID"
HOSTNAME_ENV = "HOSTNAME"  # a pod's hostname is its name unless spec.hostname says otherwise
MODEL_PVC_ENV = "TFXKFP_MODEL_PVC"
MODEL_PVC_MOUNT_PATH_ENV = "TFXKFP_MODEL_PVC_MOUNT_PATH"


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
                    f"{api_message(error)}"
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
