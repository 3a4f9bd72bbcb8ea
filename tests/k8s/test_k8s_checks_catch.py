"""The checks of tests/k8s fail on the mistakes they exist for."""

from __future__ import annotations

import copy
import subprocess
import sys
from decimal import Decimal

import kubernetes_validate
import pytest

from k8s_manifests import (
    K8S,
    binding_failures,
    find,
    node_image_version,
    quantity_bytes,
    store_volumes,
)


def test_strict_validation_rejects_an_unknown_field(built):
    volume = copy.deepcopy(find(built["kind"], "PersistentVolume", "tfx-store"))
    volume["spec"]["storageClass"] = ""  # storageClassName misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(volume, "1.37", strict=True)


def test_strict_validation_rejects_a_bad_node_port_type(built):
    service = copy.deepcopy(find(built["kind"], "Service", "kfp-ui-nodeport", "kubeflow"))
    service["spec"]["ports"][0]["nodePort"] = "30080"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, "1.37", strict=True)


@pytest.mark.parametrize("quantity, expected", [
    ("20Gi", 20 * 2**30), ("5G", 5 * 10**9), ("1500Mi", 1500 * 2**20), (1024, 1024),
    ("1e3", 1000), ("0.5Ti", 2**39),
])
def test_storage_quantities_compare_in_bytes(quantity, expected):
    assert quantity_bytes(quantity) == Decimal(expected)


@pytest.mark.parametrize("breakage, message", [
    (lambda pv, pvc: pvc["spec"]["resources"]["requests"].update(storage="21Gi"),
     "more than the volume's capacity"),
    (lambda pv, pvc: pv["spec"]["claimRef"].update(namespace="default"),
     "claimRef does not name the claim"),
    (lambda pv, pvc: pvc["spec"].pop("storageClassName"), 'storageClassName is not ""'),
    (lambda pv, pvc: pvc["spec"].update(accessModes=["ReadWriteMany"]), "access modes"),
    (lambda pv, pvc: pv["spec"].update(persistentVolumeReclaimPolicy="Delete"), "Retain"),
    (lambda pv, pvc: pv["spec"]["hostPath"].update(type="DirectoryOrCreate"), "Directory"),
])
def test_binding_check_catches_a_volume_that_would_not_bind(built, breakage, message):
    volume, claim = copy.deepcopy(store_volumes(built["kind"])[("kubeflow", "tfx-store")])
    assert binding_failures(volume, claim) == []
    breakage(volume, claim)
    failures = binding_failures(volume, claim)
    assert len(failures) == 1 and message in failures[0], failures


@pytest.mark.parametrize("image", [
    "kindest/node:v1.34.11",  # tag only: not reproducible
    "kindest/node@sha256:" + "0" * 64,  # digest without the version it stands for
    "kindest/node:latest@sha256:" + "0" * 64,
])
def test_unpinned_node_images_are_refused(image):
    with pytest.raises(AssertionError):
        node_image_version(image)


def test_yamllint_settings_fail_on_a_sloppy_file(tmp_path):
    sloppy = tmp_path / "sloppy.yaml"
    sloppy.write_text("a:  1\nb: [1,2]\nc: yes   \n")
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "--config-file",
         str(K8S / ".yamllint.yaml"), str(sloppy)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0, result.stdout
