"""skaffold and the helm CLI on the local cluster, run the way a user runs them.

skaffold v2.16.1 and helm v3.22.0 are built from their Go modules (k8s/local/build-binaries.sh)
and run in a copy of the working tree, because the dev-loop test edits a file under pipeline/.
`-p local,offline`: the local profile builds the pipeline image with buildah and pushes it to
the cluster's registry; offline, because this machine cannot fetch the monitoring chart's
dependency, deploys TF Serving alone (on its stand-in image) and runs the pipeline as a Job
in the new image where the kind profile submits it to KFP (skaffold.yaml). The run on KFP
itself is test_kfp_runs.py's. What is left unproven is listed in the README ("What is proven
here").

The README's by-hand helm commands for kind run here too, with the real helm CLI, adapted only
in the values the local cluster needs (helm/tf-serving/ci/local-values.yaml: the stand-in).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s_client

from conftest import REPO, watch_namespace

pytestmark = pytest.mark.cluster

BUILD_BINARIES = REPO / "k8s" / "local" / "build-binaries.sh"
TOOLS = ("kubectl", "skaffold", "helm")
REGISTRY = "http://localhost:5000"
# The node's store: the tfx-store claim (k8s/components/local-cluster).
STORE = Path("/var/local/tfx")
DATA = STORE / "data" / "social_network_ads" / "data.csv"
SERVING_DIR = STORE / "serving" / "social_network_ads"
SHARED_DATA = REPO.parent / "shared" / "data" / "social_network_ads.csv"
SERVING_NODE_PORT = "http://127.0.0.1:30501"  # k8s/components/nodeports
MODEL = "social_network_ads"
# What run-in-cluster.sh prints once the Job succeeded, naming the image it ran.
JOB_SUCCEEDED = re.compile(r"run-in-cluster: job/(\S+) succeeded with (\S+)")
# What skaffold dev prints once it watches the artifact's files.
WATCHING = re.compile(r"^Watching for changes\.\.\.")
PROFILES = "local,offline"
# Bounded waits, in seconds: a skaffold run (a pipeline image build, a pipeline run in a pod),
# one dev-loop iteration, the loop's exit after Ctrl-C, a helm command.
RUN_SECONDS = 1200
ITERATION_SECONDS = 1200
EXIT_SECONDS = 60
HELM_SECONDS = 300


@pytest.fixture(scope="module")
def tools_env(api_client, tmp_path_factory) -> dict[str, str]:
    """The environment a user's shell would have: the built tools first on PATH.

    HOME is a fresh directory with skaffold's global config (no metrics, no prompts): the
    machine's own ~/.skaffold is left alone. The build cache stays where cluster-up filled it.
    """
    dirs = subprocess.run(["bash", str(BUILD_BINARIES), "--dirs"], check=True,
                          capture_output=True, text=True).stdout.split()
    path = os.pathsep.join([*dirs, os.environ["PATH"]])
    for tool in TOOLS:
        if shutil.which(tool, path=path) is None:
            pytest.fail(f"{tool} is not built: `make cluster-up` builds it ({BUILD_BINARIES})")
    home = tmp_path_factory.mktemp("home")
    (home / ".skaffold").mkdir()
    (home / ".skaffold" / "config").write_text(yaml.safe_dump({"global": {
        "collect-metrics": False, "update-check": False, "survey": {"disable-prompt": True}}}))
    cache = os.environ.get("TFXKFP_CACHE", str(Path.home() / ".cache" / "tfx-kfp-gke"))
    return {**os.environ, "PATH": path, "HOME": str(home), "TFXKFP_CACHE": cache,
            "SKAFFOLD_INTERACTIVE": "false"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of the working tree as git sees it, with the cluster's image list."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    root = tmp_path_factory.mktemp("workspace")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / "build").mkdir(exist_ok=True)
    shutil.copy2(REPO / "build" / "local-images.env", root / "build" / "local-images.env")
    return root


def _empty_serving_dir() -> None:
    shutil.rmtree(SERVING_DIR, ignore_errors=True)
    SERVING_DIR.mkdir(mode=0o777)
    SERVING_DIR.chmod(0o777)  # the pipeline's uid 1000 writes here


@pytest.fixture(scope="module")
def store(tools_env, tfxkfp_script):
    """The training data staged as `tfxkfp data stage` does; afterwards the store as it was.

    The run writes its metadata, artifacts and summary into the store and its model into
    serving/; other modules expect an empty serving directory.
    """
    if any(SERVING_DIR.iterdir()):
        pytest.fail(f"{SERVING_DIR} is not empty: another run's leftovers")
    before = set(STORE.iterdir())
    if SHARED_DATA.is_file():
        source = SHARED_DATA
    else:
        print(f"note: {SHARED_DATA} not found; the run trains on synthetic data")
        source = STORE / "synthetic.csv"
        subprocess.run([tfxkfp_script, "data", "synth", "--out", str(source)], check=True)
    subprocess.run([tfxkfp_script, "data", "stage", str(source), "--out", str(DATA.parent)],
                   check=True, env=tools_env)
    yield
    for path in set(STORE.iterdir()) - before:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    DATA.unlink(missing_ok=True)
    _empty_serving_dir()


@pytest.fixture(scope="module")
def cleanup(tools_env, api_client):
    """Removes what skaffold deployed, as the modules after this one expect the cluster."""
    watch_namespace("tfx-serving", shared=True)
    watch_namespace("kubeflow", shared=True)
    yield
    subprocess.run(["helm", "uninstall", "tf-serving", "-n", "tfx-serving", "--wait",
                    "--ignore-not-found", "--timeout", f"{HELM_SECONDS}s"],
                   env=tools_env, check=True, timeout=HELM_SECONDS)
    subprocess.run(["kubectl", "-n", "kubeflow", "delete", "jobs",
                    "-l", "app.kubernetes.io/name=pipeline-run", "--wait"],
                   env=tools_env, check=True, timeout=HELM_SECONDS)


def _run(args: list[str], env: dict, cwd: Path, seconds: float) -> subprocess.CompletedProcess:
    """Runs a command as typed; its output is printed (and so reported) when it fails."""
    print(f"$ {shlex.join(args)}")
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=seconds)
    if result.returncode != 0:
        print(result.stdout[-20000:], result.stderr[-20000:], sep="\n")
    return result


def _effective_config(env: dict, cwd: Path, *flags: str) -> str:
    """skaffold.yaml as skaffold reads it (its strict parser), profiles applied."""
    result = _run(["skaffold", "diagnose", "--yaml-only", *flags], env, cwd, HELM_SECONDS)
    assert result.returncode == 0, flags
    return result.stdout


@pytest.mark.parametrize("profiles", ["kind", "minikube", "gke", "local", PROFILES])
def test_skaffold_reads_every_profile(tools_env, workspace, profiles):
    _effective_config(tools_env, workspace, "--profile-auto-activation=false", "-p", profiles)


def test_on_the_local_clusters_context_skaffold_activates_the_local_profile_alone(
        tools_env, workspace):
    chosen = _effective_config(tools_env, workspace)
    assert chosen == _effective_config(tools_env, workspace, "--profile-auto-activation=false",
                                       "-p", "local")


@pytest.fixture(scope="module")
def skaffold_run(tools_env, workspace, store, cleanup) -> subprocess.CompletedProcess:
    return _run(["skaffold", "run", "-p", PROFILES], tools_env, workspace, RUN_SECONDS)


def _recorded_image(workspace: Path) -> str:
    # Written by the artifact's after-build hook; run-in-cluster.sh runs this image.
    return (workspace / "build" / "pipeline-image.txt").read_text().strip()


def _job_image(batch_api: k8s_client.BatchV1Api, name: str) -> tuple[str, bool]:
    job = batch_api.read_namespaced_job(name, "kubeflow")
    return job.spec.template.spec.containers[0].image, bool(job.status.succeeded)


def _in_registry(image: str) -> bool:
    repository, _, tag = image.removeprefix("localhost:5000/").rpartition(":")
    request = urllib.request.Request(
        f"{REGISTRY}/v2/{repository}/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status == 200


@pytest.fixture(scope="module")
def batch_api(api_client) -> k8s_client.BatchV1Api:
    return k8s_client.BatchV1Api(api_client)


def test_skaffold_run_builds_pushes_and_runs_the_pipeline_in_the_new_image(
        skaffold_run, workspace, batch_api):
    assert skaffold_run.returncode == 0, "skaffold run failed (its output is above)"
    image = _recorded_image(workspace)
    assert image.startswith("localhost:5000/tfx-kfp-gke/pipeline:")
    assert _in_registry(image)
    [(job, ran)] = JOB_SUCCEEDED.findall(skaffold_run.stdout + skaffold_run.stderr)
    assert ran == image
    assert _job_image(batch_api, job) == (image, True)


def _serving(path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    url = f"{SERVING_NODE_PORT}/v1/models/{MODEL}{path}"
    with urllib.request.urlopen(url, data=data, timeout=10) as response:
        return json.load(response)


def _wait_for_available(version: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            states = {s["version"]: s["state"] for s in _serving("")["model_version_status"]}
            if states.get(version) == "AVAILABLE":
                return
        except OSError:  # the Service has no ready endpoint yet
            states = {}
        assert time.monotonic() < deadline, f"version {version} not AVAILABLE: {states}"
        time.sleep(1)


def test_the_version_the_run_pushed_is_served_and_predicts(skaffold_run):
    assert skaffold_run.returncode == 0
    versions = [p.name for p in SERVING_DIR.iterdir() if p.name.isdigit()]
    assert len(versions) == 1, versions
    _wait_for_available(versions[0])
    # The README's request, through the NodePort.
    body = {"signature_name": "serving_raw",
            "instances": [{"gender": "Male", "age": 47, "estimated_salary": 92000}]}
    [prediction] = _serving(":predict", body)["predictions"]
    assert 0.0 < prediction["probability"] < 1.0
    assert prediction["class"] in (0, 1)


def test_helm_test_passes_with_the_helm_cli(skaffold_run, tools_env):
    assert skaffold_run.returncode == 0
    result = _run(["helm", "test", "tf-serving", "-n", "tfx-serving"], tools_env, REPO,
                  HELM_SECONDS)
    assert result.returncode == 0
    assert "Phase:          Succeeded" in result.stdout


def _readme_block(after: str) -> list[str]:
    """The commands of the first ```sh block after the line `after`, continuations joined."""
    text = (REPO / "README.md").read_text()
    block = text[text.index(after):].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = block.replace("\\\n", " ").splitlines()
    return [shlex.join(shlex.split(c, comments=True)) for c in commands if c.strip()]


def test_the_readme_kind_commands_for_tf_serving_run_with_the_helm_cli(
        skaffold_run, tools_env, workspace):
    assert skaffold_run.returncode == 0
    commands = _readme_block("The same without skaffold, step by step.")
    install = [c for c in commands if c.startswith("helm upgrade --install tf-serving ")]
    test = [c for c in commands if c.startswith("helm test tf-serving ")]
    assert install and test, commands
    for command in [*install, *test]:
        args = shlex.split(command)
        if args[1] == "upgrade":
            # The local cluster's values on top: the stand-in images (skaffold's local profile).
            args += ["-f", "helm/tf-serving/ci/local-values.yaml"]
        result = _run(args, tools_env, workspace, HELM_SECONDS)
        assert result.returncode == 0, command
    result = _run(["kubectl", "apply", "-k", "k8s/overlays/local"], tools_env, workspace,
                  HELM_SECONDS)
    assert result.returncode == 0


class _Output:
    """Reads a process's merged output on a thread, so waits on it are bounded."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern, seconds: float) -> re.Match:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line matching {pattern.pattern} within {seconds}s"
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"the process ended before {pattern.pattern}"
            self.lines.append(line)
            if match := pattern.search(line):
                return match


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the process group (make, skaffold and what they started), as a terminal
    sends it; waits for the group to empty."""
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=EXIT_SECONDS)
    deadline = time.monotonic() + EXIT_SECONDS
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "skaffold dev left processes in its group"
        time.sleep(0.5)


def test_skaffold_dev_rebuilds_on_a_pipeline_change_and_the_next_run_uses_the_new_image(
        skaffold_run, tools_env, workspace, batch_api):
    assert skaffold_run.returncode == 0
    # The README's `make dev-local`. SKAFFOLD_CLEANUP (skaffold's --cleanup): on exit skaffold
    # dev would delete what it deployed, k8s/overlays/local's namespaces and volumes included,
    # which the modules after this one need.
    process = subprocess.Popen(
        ["make", "dev-local", f"LOCAL_PROFILES={PROFILES}"],
        env={**tools_env, "SKAFFOLD_CLEANUP": "false"}, cwd=workspace,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = _Output(process)
    try:
        first = output.wait_for(JOB_SUCCEEDED, ITERATION_SECONDS)
        assert first.group(2) == _recorded_image(workspace)
        # skaffold lists the files it watches only after the first iteration's hooks: an edit
        # before this line would be part of its starting state, not a change.
        output.wait_for(WATCHING, ITERATION_SECONDS)
        # A change a developer makes: the package's code, hence the image's inputs.
        init = workspace / "pipeline" / "__init__.py"
        init.write_text(init.read_text() + "# changed by the skaffold dev test\n")
        second = output.wait_for(JOB_SUCCEEDED, ITERATION_SECONDS)
    except AssertionError:
        print("".join(output.lines[-200:]))
        os.killpg(process.pid, signal.SIGKILL)
        raise
    _stop(process)
    old, new = first.group(2), second.group(2)
    assert new != old and new.rpartition(":")[0] == old.rpartition(":")[0]
    assert new == _recorded_image(workspace)
    assert _in_registry(new)
    assert _job_image(batch_api, second.group(1)) == (new, True)
