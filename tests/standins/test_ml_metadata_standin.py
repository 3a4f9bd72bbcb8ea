"""The ML Metadata stand-in, run as a real process on loopback with SQLite stores.

What the stand-in must reproduce is metadata_store_server 1.14.0's behaviour as its sources give
it (see the stand-in's docstring). These tests check it through ml-metadata's own gRPC client
(what TFX uses) and the generated gRPC stub (what KFP's Go clients amount to), and compare
errors with what the same library answers in-process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import (
    metadata_store_pb2,
    metadata_store_service_pb2,
    metadata_store_service_pb2_grpc,
)

STANDIN = Path(__file__).parent / "mlmd_server" / "ml_metadata_standin.py"
# helm/kfp templates/metadata-grpc/deployment.yaml
CHART_CHANNEL_ARGUMENTS = ("--grpc_channel_arguments=grpc.max_metadata_size=16384,"
                           "grpc.max_receive_message_length=104857600,"
                           "grpc.max_send_message_length=104857600")
SERVICE = "ml_metadata.MetadataStoreService"
# metadata_store_service_impl.h of 1.14.0 overrides every method of the service but these.
UNIMPLEMENTED = {"GetParentContextsByContexts", "GetChildrenContextsByContexts",
                 "GetLineageGraph"}
START_SECONDS = 20
STOP_SECONDS = 10
BIG = 5 * 1024 * 1024  # over gRPC's 4 MiB default receive limit


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text()

    def client(self, **config) -> metadata_store.MetadataStore:
        config = {"client_timeout_sec": 20, **config}
        return metadata_store.MetadataStore(metadata_store_pb2.MetadataStoreClientConfig(
            host="127.0.0.1", port=self.port, **config))


def _wait_for(what: str, condition: Callable[[], object], server: Server,
              seconds: float = START_SECONDS) -> None:
    """Polls condition until it holds; fails at the deadline, or once the stand-in exits."""
    deadline = time.monotonic() + seconds
    while not condition():
        exited = server.process.poll() is not None
        if exited or time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds} s{' (the stand-in exited)' if exited else ''}"
                        f"\n{server.log()[-3000:]}")
        time.sleep(0.1)


def _start(tmp: Path, args: list[str], connect_seconds: float | None = None,
           wait: bool = True) -> Server:
    port = _free_port()
    env = dict(os.environ)
    if connect_seconds is not None:
        env["ML_METADATA_STANDIN_CONNECT_SECONDS"] = str(connect_seconds)
    stdout, stderr = tmp / f"stdout-{port}.log", tmp / f"stderr-{port}.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([sys.executable, str(STANDIN), f"--grpc_port={port}", *args],
                                   stdout=out, stderr=err, env=env, cwd=tmp)
    server = Server(process, port, stderr)
    if wait:
        _wait_for(f"gRPC port {port}", lambda: _port_open(port), server)
    return server


def _stop(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise


def _exit_code(server: Server, seconds: float = START_SECONDS) -> int:
    try:
        return server.process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(f"the stand-in did not exit within {seconds} s\n{server.log()[-3000:]}")


def _sqlite_config(tmp: Path, db: Path, extra: str = "") -> str:
    """--metadata_store_server_config_file for a SQLite store, as the real server reads it."""
    path = tmp / f"server_config_{db.stem}.pbtxt"
    path.write_text(f'connection_config {{ sqlite {{ filename_uri: "{db}" }} }}\n'
                    f"migration_options {{ enable_upgrade_migration: true }}\n{extra}")
    return f"--metadata_store_server_config_file={path}"


@pytest.fixture
def start(tmp_path) -> Iterator[Callable[..., Server]]:
    """_start in tmp_path; whatever a failed test leaves running is killed after it."""
    started: list[Server] = []

    def starter(args: list[str], **options) -> Server:
        started.append(_start(tmp_path, args, **options))
        return started[-1]

    yield starter
    for leftover in started:
        if leftover.process.poll() is None:
            leftover.process.kill()
            leftover.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """The stand-in with the chart's channel arguments, two glog flags and a SQLite store."""
    tmp = tmp_path_factory.mktemp("mlmd")
    started = _start(tmp, [_sqlite_config(tmp, tmp / "metadata.sqlite"), CHART_CHANNEL_ARGUMENTS,
                           "--enable_database_upgrade=true", "--logtostderr", "--v=1"])
    yield started
    _stop(started)


def _artifact_type(name: str) -> metadata_store_pb2.ArtifactType:
    artifact_type = metadata_store_pb2.ArtifactType(name=name)
    artifact_type.properties["span"] = metadata_store_pb2.INT
    artifact_type.properties["split_names"] = metadata_store_pb2.STRING
    return artifact_type


def test_lineage_round_trips_through_the_library_client(server):
    store = server.client()
    artifact_type_id = store.put_artifact_type(_artifact_type("RoundTripExamples"))
    execution_type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))
    context_type_id = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline_run"))
    [pipeline, run] = store.put_contexts([
        metadata_store_pb2.Context(type_id=context_type_id, name="pipeline"),
        metadata_store_pb2.Context(type_id=context_type_id, name="run-1")])
    store.put_parent_contexts([metadata_store_pb2.ParentContext(child_id=run, parent_id=pipeline)])
    examples = metadata_store_pb2.Artifact(type_id=artifact_type_id, uri="/data/examples/1",
                                           state=metadata_store_pb2.Artifact.LIVE)
    examples.properties["span"].int_value = 7
    examples.properties["split_names"].string_value = '["train","eval"]'
    examples.custom_properties["producer"].string_value = "ExampleGen"
    [examples_id] = store.put_artifacts([examples])
    model = metadata_store_pb2.Artifact(type_id=artifact_type_id, uri="/models/1")
    execution = metadata_store_pb2.Execution(
        type_id=execution_type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    execution_id, [_, model_id], _ = store.put_execution(
        execution,
        [(store.get_artifacts_by_id([examples_id])[0],  # put_execution upserts the whole node
          metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)),
         (model, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT))],
        store.get_contexts_by_id([run]))
    store.put_attributions_and_associations(
        [metadata_store_pb2.Attribution(artifact_id=examples_id, context_id=pipeline)], [])

    [read] = store.get_artifacts_by_id([examples_id])
    assert (read.uri, read.properties["span"].int_value, read.custom_properties["producer"]
            .string_value) == ("/data/examples/1", 7, "ExampleGen")
    assert read.state == metadata_store_pb2.Artifact.LIVE and read.create_time_since_epoch > 0
    events = store.get_events_by_execution_ids([execution_id])
    assert sorted((e.artifact_id, e.type) for e in events) == sorted([
        (examples_id, metadata_store_pb2.Event.INPUT), (model_id, metadata_store_pb2.Event.OUTPUT)])
    assert {a.id for a in store.get_artifacts_by_context(run)} == {examples_id, model_id}
    assert [e.id for e in store.get_executions_by_context(run)] == [execution_id]
    assert {c.id for c in store.get_contexts_by_artifact(examples_id)} == {pipeline, run}
    assert [c.id for c in store.get_parent_contexts_by_context(run)] == [pipeline]
    subgraph = store.get_lineage_subgraph(
        metadata_store_pb2.LineageSubgraphQueryOptions(
            starting_artifacts=metadata_store_pb2.LineageSubgraphQueryOptions.StartingNodes(
                filter_query=f"id = {examples_id}"), max_num_hops=2),
        ["artifacts", "executions", "events"])
    assert {a.id for a in subgraph.artifacts} == {examples_id, model_id}
    assert [e.id for e in subgraph.executions] == [execution_id]


def test_a_second_client_sees_what_the_first_wrote(server):
    writer = server.client()
    type_id = writer.put_artifact_type(_artifact_type("SharedExamples"))
    [artifact_id] = writer.put_artifacts([
        metadata_store_pb2.Artifact(type_id=type_id, uri="/shared/1")])
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = metadata_store_service_pb2_grpc.MetadataStoreServiceStub(channel)
        response = stub.GetArtifactsByID(
            metadata_store_service_pb2.GetArtifactsByIDRequest(artifact_ids=[artifact_id]),
            timeout=20)
    assert [(a.id, a.uri, a.type) for a in response.artifacts] == [
        (artifact_id, "/shared/1", "SharedExamples")]
    assert [a.uri for a in server.client().get_artifacts_by_type("SharedExamples")] == ["/shared/1"]


def test_concurrent_calls_all_land(server):
    type_id = server.client().put_artifact_type(_artifact_type("ConcurrentExamples"))

    def write(worker: int) -> list[int]:
        store = server.client()
        return [store.put_artifacts([metadata_store_pb2.Artifact(
            type_id=type_id, uri=f"/concurrent/{worker}/{n}")])[0] for n in range(10)]

    with futures.ThreadPoolExecutor(4) as pool:
        ids = [i for worker_ids in pool.map(write, range(4)) for i in worker_ids]
    assert len(set(ids)) == 40
    stored = server.client().get_artifacts_by_type("ConcurrentExamples")
    assert sorted(a.id for a in stored) == sorted(ids)


# Failing calls, each run against the stand-in and against the library in-process: the method
# the stand-in logs, and the call.
_FAILING: dict[str, tuple[str, Callable[[metadata_store.MetadataStore, int], object]]] = {
    "type with another schema": ("PutArtifactType", lambda store, _: store.put_artifact_type(
        metadata_store_pb2.ArtifactType(name="ErrorExamples", properties={
            "span": metadata_store_pb2.STRING, "split_names": metadata_store_pb2.STRING}))),
    "missing type": ("GetArtifactType", lambda store, _: store.get_artifact_type("NoSuchType")),
    "unknown type id": ("PutArtifacts", lambda store, _: store.put_artifacts(
        [metadata_store_pb2.Artifact(type_id=987654, uri="x")])),
    "no type id": ("PutArtifacts", lambda store, _: store.put_artifacts(
        [metadata_store_pb2.Artifact(uri="x")])),
    "bad filter": ("GetArtifacts", lambda store, _: store.get_artifacts(
        list_options=metadata_store.ListOptions(filter_query="uri =="))),
    "duplicate name": ("PutArtifacts", lambda store, type_id: store.put_artifacts(
        [metadata_store_pb2.Artifact(type_id=type_id, uri="u", name="taken")])),
}


@pytest.mark.parametrize("case", sorted(_FAILING))
def test_errors_are_the_librarys(server, tmp_path, case):
    method, failing_call = _FAILING[case]
    library = metadata_store.MetadataStore(metadata_store_pb2.ConnectionConfig(
        sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
            filename_uri=str(tmp_path / "library.sqlite"))))
    raised = {}
    for where, store in {"stand-in": server.client(), "library": library}.items():
        type_id = store.put_artifact_type(_artifact_type("ErrorExamples"))
        if store.get_artifact_by_type_and_name("ErrorExamples", "taken") is None:
            store.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri="u",
                                                             name="taken")])
        with pytest.raises(errors.StatusError) as caught:
            failing_call(store, type_id)
        # Ids differ between the two stores.
        raised[where] = (type(caught.value), re.sub(r"\d+", "N", str(caught.value)))
    assert raised["stand-in"] == raised["library"]
    assert raised["stand-in"][0] in (errors.AlreadyExistsError, errors.NotFoundError,
                                     errors.InvalidArgumentError)
    assert f"{method} failed: " in server.log()


def test_every_method_is_served_but_the_unimplemented_ones(server):
    """Each method with an empty request: only 1.14.0's unimplemented ones say UNIMPLEMENTED."""
    methods = metadata_store_service_pb2.DESCRIPTOR.services_by_name[
        "MetadataStoreService"].methods
    assert len(methods) == 52
    assert not any(m.client_streaming or m.server_streaming for m in methods)
    answered: dict[str, grpc.StatusCode] = {}
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for method in methods:
            call = channel.unary_unary(f"/{SERVICE}/{method.name}")  # bytes in, bytes out
            try:
                call(b"", timeout=20)
                answered[method.name] = grpc.StatusCode.OK
            except grpc.RpcError as error:
                answered[method.name] = error.code()
        stub = metadata_store_service_pb2_grpc.MetadataStoreServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetLineageGraph(metadata_store_service_pb2.GetLineageGraphRequest(), timeout=20)
    assert {name for name, code in answered.items()
            if code == grpc.StatusCode.UNIMPLEMENTED} == UNIMPLEMENTED
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "ML Metadata stand-in" in caught.value.details()
    assert "GetLineageGraph failed: UNIMPLEMENTED" in server.log()


def test_a_request_over_4_mib_needs_the_channel_arguments(server, tmp_path, start):
    big = metadata_store_pb2.Artifact(uri="/big")
    big.custom_properties["blob"].string_value = "x" * BIG
    big.type_id = server.client().put_artifact_type(_artifact_type("BigExamples"))
    [big_id] = server.client().put_artifacts([big])
    # ml-metadata's client needs its own receive limit raised to read it back.
    reader = server.client(channel_arguments=metadata_store_pb2.GrpcChannelArguments(
        max_receive_message_length=2 * BIG))
    [read] = reader.get_artifacts_by_id([big_id])
    assert len(read.custom_properties["blob"].string_value) == BIG
    with pytest.raises(errors.ResourceExhaustedError):
        server.client().get_artifacts_by_id([big_id])

    plain = start([_sqlite_config(tmp_path, tmp_path / "plain.sqlite")])
    store = plain.client()
    big.type_id = store.put_artifact_type(_artifact_type("BigExamples"))
    with pytest.raises(errors.ResourceExhaustedError):
        store.put_artifacts([big])
    assert _stop(plain) == 0


def test_unhonoured_flags_are_named_once(server):
    log = server.log()
    for flag in ("--logtostderr=true", "--v=1"):
        lines = [line for line in log.splitlines() if f"cannot honour {flag} " in line]
        assert [line.startswith("ml_metadata_standin: ") for line in lines] == [True], log
    assert "cannot honour --enable_database_upgrade" not in log
    assert "UNIMPLEMENTED GetParentContextsByContexts, GetChildrenContextsByContexts, " \
           "GetLineageGraph" in log


@pytest.mark.parametrize(("flag", "message"), [
    ("--no_such_flag=1", "ERROR: unknown command line flag 'no_such_flag'"),
    ("--mysql_config_port=abc", "ERROR: illegal value 'abc' specified for int32 flag "
                                "'mysql_config_port'"),
    ("--enable_database_upgrade=maybe", "ERROR: illegal value 'maybe' specified for bool flag "
                                        "'enable_database_upgrade'"),
])
def test_a_bad_flag_ends_the_process_as_gflags_does(flag, message, start):
    server = start([flag], wait=False)
    assert _exit_code(server) == 1
    assert message in server.log()


def test_mysql_flags_retry_then_give_up_without_opening_the_port(start):
    """The chart's flags against a closed MySQL port: logged retries, no port, then exit 1."""
    mysql_port = _free_port()
    server = start([
        "--mysql_config_host=127.0.0.1", f"--mysql_config_port={mysql_port}",
        "--mysql_config_database=metadb", "--mysql_config_user=mlmd",
        "--mysql_config_password=s3cret-pw", "--enable_database_upgrade=true",
        CHART_CHANNEL_ARGUMENTS], connect_seconds=3, wait=False)
    deadline = time.monotonic() + START_SECONDS
    while server.process.poll() is None and time.monotonic() < deadline:
        assert not _port_open(server.port), server.log()
        time.sleep(0.1)
    assert _exit_code(server) == 1
    log = server.log()
    assert (f"metadata source: MySQL 127.0.0.1:{mysql_port}, database metadb, created if "
            "missing, user 'mlmd'; upgrade migration on") in log
    assert len(re.findall(r"connect attempt \d+ failed: mysql_real_connect failed", log)) >= 1
    assert "MetadataStore cannot be created" in log
    assert "s3cret-pw" not in log


def test_start_up_waits_for_the_database_then_serves(tmp_path, start):
    db = tmp_path / "later" / "metadata.sqlite"
    server = start([_sqlite_config(tmp_path, db)], connect_seconds=60, wait=False)
    _wait_for("a failed connect attempt", lambda: "connect attempt 1 failed" in server.log(),
              server)
    assert not _port_open(server.port)
    db.parent.mkdir()
    _wait_for(f"gRPC port {server.port}", lambda: _port_open(server.port), server)
    assert server.client().put_artifact_type(_artifact_type("LateExamples")) > 0
    assert db.exists()
    assert _stop(server) == 0


def test_sigterm_while_waiting_for_the_database_exits_0(tmp_path, start):
    server = start([_sqlite_config(tmp_path, tmp_path / "never" / "db.sqlite")],
                   connect_seconds=60, wait=False)
    _wait_for("a failed connect attempt", lambda: "connect attempt 1 failed" in server.log(),
              server)
    assert _stop(server) == 0
    assert "stopped on a signal before serving" in server.log()


def test_sigterm_stops_the_server_gracefully(tmp_path, start):
    server = start([_sqlite_config(tmp_path, tmp_path / "db.sqlite")])
    assert server.client().get_artifact_types() == []
    started = time.monotonic()
    assert _stop(server) == 0
    assert time.monotonic() - started < STOP_SECONDS
    assert server.log().rstrip().endswith("ml_metadata_standin: stopped")
    assert not _port_open(server.port)


def test_each_call_connects_anew_so_a_lost_database_does_not_stick(tmp_path, start):
    """With MySQL a call's connection may find the server gone; with SQLite the stand-in's
    answer to that is exercised by taking the database file away between calls: a shared
    connection would keep reading the moved file, a new one per call fails, then recovers."""
    db = tmp_path / "db.sqlite"
    server = start([_sqlite_config(tmp_path, db)])
    store = server.client()
    type_id = store.put_artifact_type(_artifact_type("KeptExamples"))
    [kept] = store.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri="/kept")])
    db.rename(tmp_path / "away.sqlite")
    db.write_bytes(b"not a database " * 512)
    with pytest.raises(errors.InternalError, match="file is not a database"):
        store.get_artifacts_by_id([kept])
    assert "Failed to connect to the database (GetArtifactsByID)" in server.log()
    (tmp_path / "away.sqlite").replace(db)
    assert [a.uri for a in store.get_artifacts_by_id([kept])] == ["/kept"]
    assert _stop(server) == 0


def test_fake_database_is_new_on_every_call_as_in_the_real_server(start):
    server = start([])
    store = server.client()
    assert store.put_artifact_type(_artifact_type("Lost")) > 0
    assert store.get_artifact_types() == []
    assert "Using in memory fake database" in server.log()
    assert _stop(server) == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_config_file_ssl_config_serves_tls(tmp_path, start):
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=mlmd",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True, timeout=30)
    ssl = (f"ssl_config {{ server_key: {_quoted(key)} server_cert: {_quoted(cert)} "
           "client_verify: false }\n")
    server = start([_sqlite_config(tmp_path, tmp_path / "db.sqlite", ssl)])
    secure = server.client(ssl_config=metadata_store_pb2.MetadataStoreClientConfig.SSLConfig(
        custom_ca=cert.read_text()))
    assert secure.put_artifact_type(_artifact_type("TlsExamples")) > 0
    with pytest.raises(errors.UnavailableError):
        server.client(client_timeout_sec=5).get_artifact_types()
    assert _stop(server) == 0


def _quoted(path: Path) -> str:
    return '"' + path.read_text().replace("\n", "\\n") + '"'
