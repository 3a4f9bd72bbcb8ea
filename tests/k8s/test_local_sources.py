"""k8s/local/upstream.sh and what the local cluster builds from upstream releases.

The scripts take each release archive from $TFXKFP_UPSTREAM, checked by its pinned sha256, or
download GitHub's tarball of the tag, checked by the commit id `git archive` writes into it.
Both checks are run here on archives made to fail them. The local values of helm/kfp name the
images build-images.sh builds, at the versions versions.env pins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from k8s_manifests import LOCAL_CLUSTER_VERSIONS, REPO, read_env

UPSTREAM_SCRIPT = REPO / "k8s" / "local" / "upstream.sh"
BUILD_IMAGES = REPO / "k8s" / "local" / "build-images.sh"
SHARED_UPSTREAM = REPO.parent / "shared" / "upstream"
KFP_LOCAL_VALUES = REPO / "helm" / "kfp" / "ci" / "local-values.yaml"
SCRIPT_SECONDS = 120


def _run(*args: str, cache: Path, upstream: Path | None, cwd: Path = REPO
         ) -> subprocess.CompletedProcess:
    env = {**os.environ, "TFXKFP_CACHE": str(cache), "TFXKFP_UPSTREAM": str(upstream or "")}
    return subprocess.run(["bash", str(cwd / "k8s" / "local" / "upstream.sh"), *args],
                          capture_output=True, text=True, env=env, timeout=SCRIPT_SECONDS,
                          check=False)


def _git_archive(tmp_path: Path) -> tuple[Path, str]:
    """A tarball `git archive` made of a one-commit repository, and that commit's id."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "go.mod").write_text("module example.com/other\n")
    git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(source)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "other release"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = tmp_path / "other.tar.gz"
    subprocess.run([*git, "archive", "--prefix=pipelines-x/", "-o", str(archive), "HEAD"],
                   check=True)
    return archive, commit


def test_an_archive_that_is_not_the_pinned_one_is_refused(tmp_path):
    versions = read_env(LOCAL_CLUSTER_VERSIONS)
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / versions["KFP_ARCHIVE"]).write_bytes(b"not the release")
    result = _run("source", "kfp", cache=tmp_path / "cache", upstream=upstream)
    assert result.returncode == 1
    assert f"{upstream / versions['KFP_ARCHIVE']}: sha256 is " in result.stderr
    assert f"versions.env pins {versions['KFP_ARCHIVE_SHA256']}" in result.stderr
    assert not (tmp_path / "cache" / "src").exists() or not any(
        (tmp_path / "cache" / "src").iterdir())


def test_a_download_of_another_commit_is_refused(tmp_path):
    # Without $TFXKFP_UPSTREAM the release is downloaded into the cache; a download already
    # there is checked as a fresh one is: by the commit id inside it.
    versions = read_env(LOCAL_CLUSTER_VERSIONS)
    archive, commit = _git_archive(tmp_path)
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    shutil.copy(archive, downloads / f"kfp-{versions['KFP_COMMIT']}.tar.gz")
    result = _run("source", "kfp", cache=tmp_path / "cache", upstream=None)
    assert result.returncode == 1
    assert f"commit {commit}, versions.env pins {versions['KFP_COMMIT']}" in result.stderr


def test_the_pinned_release_is_unpacked_once_into_the_cache(tmp_path):
    versions = read_env(LOCAL_CLUSTER_VERSIONS)
    if not (SHARED_UPSTREAM / versions["ARGO_WORKFLOWS_ARCHIVE"]).is_file():
        reason = f"{SHARED_UPSTREAM} holds no {versions['ARGO_WORKFLOWS_ARCHIVE']}"
        print(f"note: {reason}")
        pytest.skip(reason)
    cache = tmp_path / "cache"
    first = _run("source", "argo", cache=cache, upstream=SHARED_UPSTREAM)
    assert first.returncode == 0, first.stderr
    source = Path(first.stdout.strip())
    assert source.parent == cache / "src"
    module = (source / "go.mod").read_text().splitlines()[0]
    assert module == "module github.com/argoproj/argo-workflows/v3"
    # The symlink the Go module zip drops is there.
    assert (source / "workflow/executor/osspecific/signal_linux.go").is_symlink()
    marker = (source / ".unpacked").stat().st_mtime_ns
    (source / "go.mod").unlink()  # a second call must not unpack again
    again = _run("source", "argo", cache=cache, upstream=SHARED_UPSTREAM)
    assert again.returncode == 0 and Path(again.stdout.strip()) == source
    assert (source / ".unpacked").stat().st_mtime_ns == marker
    assert not (source / "go.mod").exists()


def test_the_dependency_chart_is_checked_and_put_where_helm_looks(tmp_path):
    versions = read_env(LOCAL_CLUSTER_VERSIONS)
    clone = tmp_path / "clone"
    (clone / "k8s" / "local").mkdir(parents=True)
    (clone / "helm" / "kfp").mkdir(parents=True)
    for name in ("upstream.sh", "versions.env"):
        shutil.copy(REPO / "k8s" / "local" / name, clone / "k8s" / "local" / name)
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    chart = upstream / versions["ARGO_CHART_ARCHIVE"]
    chart.write_bytes(b"a different chart")
    refused = _run("charts", cache=tmp_path / "cache", upstream=upstream, cwd=clone)
    assert refused.returncode == 1 and "sha256 is" in refused.stderr
    assert not (clone / "helm" / "kfp" / "charts" / chart.name).exists()
    if not (SHARED_UPSTREAM / chart.name).is_file():
        reason = f"{SHARED_UPSTREAM} holds no {chart.name}"
        print(f"note: {reason}")
        pytest.skip(reason)
    placed = _run("charts", cache=tmp_path / "cache", upstream=SHARED_UPSTREAM, cwd=clone)
    assert placed.returncode == 0, placed.stderr
    with tarfile.open(clone / "helm" / "kfp" / "charts" / chart.name) as archive:
        chart_yaml = yaml.safe_load(archive.extractfile("argo-workflows/Chart.yaml"))
    # The version helm/kfp's Chart.yaml names as its dependency.
    chart = yaml.safe_load((REPO / "helm" / "kfp" / "Chart.yaml").read_text())
    [dependency] = chart["dependencies"]
    assert chart_yaml["version"] == dependency["version"]


def test_local_values_name_the_images_the_local_cluster_builds():
    versions = read_env(LOCAL_CLUSTER_VERSIONS)
    values = yaml.safe_load(KFP_LOCAL_VALUES.read_text())
    chart = yaml.safe_load((REPO / "helm" / "kfp" / "Chart.yaml").read_text())
    script = BUILD_IMAGES.read_text()
    # KFP's own images keep the chart's names and its appVersion: built from that release.
    assert versions["KFP_VERSION"] == chart["appVersion"]
    assert 'KFP_IMAGE_PREFIX=ghcr.io/kubeflow/kfp\n' in script
    for key in ("apiServer", "persistenceAgent", "scheduledWorkflow"):
        assert key not in values, f"{key}: the local cluster builds KFP's image under its name"
    # SeaweedFS at the version built; the stand-ins under the names build-images.sh gives them.
    assert values["seaweedfs"]["image"]["tag"] == versions["SEAWEEDFS_VERSION"].removeprefix("v")
    for key, variable in (("mysql", "MARIADB_IMAGE"), ("tests", "DEBIAN_BASE_IMAGE")):
        image = values[key]["image"]
        assert f"{variable}={image['repository']}:{image['tag']}\n" in script, key
    mlmd = values["metadataGrpc"]["image"]
    assert f"ML_METADATA_STANDIN_IMAGE={mlmd['repository']}:" in script
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    assert f"ml-metadata=={mlmd['tag']}" in constraints


# The images the local cluster builds beside docker/'s (tests/docker checks those).
LOCAL_DOCKERFILES = sorted([*REPO.glob("k8s/local/images/*/Dockerfile"),
                            *REPO.glob("tests/standins/*/Dockerfile")])


@pytest.mark.parametrize("dockerfile", LOCAL_DOCKERFILES,
                         ids=lambda path: path.relative_to(REPO).as_posix())
def test_the_local_cluster_dockerfiles_pass_hadolint(dockerfile):
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(dockerfile)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
