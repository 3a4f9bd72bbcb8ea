#!/usr/bin/env python3
"""ML Metadata stand-in: a Python program in place of ``metadata_store_server`` 1.14.0.

It is NOT the ML Metadata server. It exists because the C++ binary (image
gcr.io/tfx-oss-public/ml_metadata_store_server:1.14.0, which KFP 2.16.1 pins) cannot be pulled
or built where the local cluster runs; the stand-in image installs this file as
/bin/metadata_store_server so that helm/kfp's metadata-grpc Deployment runs it unchanged. Every
line it logs starts with ``ml_metadata_standin:``. The store itself is not reimplemented: each
call is handed, as bytes, to ml-metadata's own C++ MetadataStore through the Python wheel's
pybind11 binding (ml-metadata 1.16.0; its schema version, 10, is 1.14.0's). What the stand-in
adds was checked against google/ml-metadata v1.14.0 (paths under ml_metadata/):
metadata_store/metadata_store_server_main.cc, metadata_store/metadata_store_service_impl.{h,cc},
metadata_store/metadata_store_factory.cc, metadata_store/mysql_metadata_source.cc and
proto/metadata_store{,_service}.proto.

- Service: every method of ``ml_metadata.MetadataStoreService`` (52, all unary: none is
  streaming) with the library's status code and message. The binding lacks
  GetParentContextsByContexts, GetChildrenContextsByContexts and GetLineageGraph; so does
  the 1.14.0 server (service_impl.h overrides none of them, so gRPC answers UNIMPLEMENTED with
  no message): the stand-in answers UNIMPLEMENTED too, with a message that names it.
- Connections, as the real server: at start-up one store is created in the main thread with the
  MigrationOptions (this creates a missing MySQL database, since MySQLDatabaseConfig's
  ``skip_db_creation`` defaults to false and MySqlMetadataSource::ConnectImpl then runs
  ``CREATE DATABASE IF NOT EXISTS``, and it creates or upgrades the schema), then dropped; after
  that every call opens a store of its own (a new database connection, no migration), uses it in
  its one handler thread and closes it before answering (service_impl.cc ConnectMetadataStore).
  So no MySQL connection is ever shared between threads or left idle for the server to close
  (the library's own reconnect, on MySQL error 2006 at BEGIN, is thus never needed), and a
  database that went away fails only the calls made while it is away. A failed connect
  answers INTERNAL with the library's message: the binding raises it without its status code
  (INTERNAL is what the MySQL and SQLite sources return for a failed connect). With
  ``fake_database`` each call thus gets a new, empty in-memory store, as in the real server.
- Flags (gflags): every flag of 1.14.0 with its name, type, default and meaning, in the forms
  ``--flag=value``, ``-flag=value``, ``--flag value`` and, for booleans, ``--flag`` and
  ``--noflag``; an unknown flag or a malformed value ends the process with gflags' message and
  exit code 1. The metadata source is chosen as main.cc does (--metadata_source_config_type;
  by default a readable --metadata_store_server_config_file, else the --mysql_config_* flags,
  else fake_database); a config file's ssl_config serves gRPC over TLS. --grpc_channel_arguments
  become server options (integer values as integers, as AddGrpcChannelArgs does). glog's and
  gflags' own flags are accepted and named on stderr as not honoured.
- Start-up: the port opens only once the store is connected and migrated, so helm/kfp's
  tcpSocket probes mean "serving". Where the real server retries only an ABORTED connect
  (--metadata_store_connection_retries times, at once) and otherwise dies, leaving the kubelet
  to restart it, the stand-in retries every failure every 2 s, one log line each, for
  $ML_METADATA_STANDIN_CONNECT_SECONDS (default 60: helm/kfp's liveness probe restarts the pod
  after about 90 s without the port), then exits 1. With --downgrade_db_schema_version it makes
  one attempt and exits, as the real server does after a downgrade.
- SIGTERM or SIGINT: the gRPC server stops with a 5 s grace period and the process exits 0 (the
  real one is killed by the signal).

Not reproduced or not proven: the real server's own logging (glog), its dynamic thread pool
(here 8 worker threads, and the binding holds Python's GIL, so calls run one at a time), the
status code of a failed connect (see above), and that the wheel's MySQL client behaves as the
image's; MySQL and PostgreSQL are reached only through the library and are not exercised by the
stand-in's offline tests, which use SQLite. A refused MySQL connect logs
"mysql_real_connect failed: errno: , error: " with both empty: the library reads them after
mysql_real_connect has returned NULL (its own glog line on stderr says more).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from concurrent import futures

_PREFIX = "ml_metadata_standin"
_STOP = threading.Event()  # set by SIGTERM or SIGINT

# The first line of the log; the signal handlers come before the imports, so that a pod deleted
# while the stand-in starts still exits 0.
if __name__ == "__main__":
    print(f"{_PREFIX}: this is the ML Metadata stand-in (tests/standins/mlmd_server), not "
          "metadata_store_server: it serves ml-metadata's own store over gRPC, for tests only",
          file=sys.stderr, flush=True)
    # Set from a thread: the handler may interrupt the main thread inside _STOP.wait(), holding
    # the event's lock, which set() takes too.
    for _signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_signal, lambda *_: threading.Thread(target=_STOP.set).start())

import grpc  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from ml_metadata.metadata_store.pywrap.metadata_store_extension import (  # noqa: E402
    metadata_store as _binding,
)
from ml_metadata.proto import metadata_store_pb2, metadata_store_service_pb2  # noqa: E402

# --- flags, constants -----------------------------------------------------------------------------

SERVICE = metadata_store_service_pb2.DESCRIPTOR.services_by_name["MetadataStoreService"]
# metadata_store_server_main.cc's flags, in its order: name -> (type, default).
_FLAGS: dict[str, tuple[type, object]] = {
    "grpc_port": (int, 8080), "grpc_channel_arguments": (str, ""),
    "metadata_source_config_type": (str, "default"),
    "metadata_store_server_config_file": (str, ""),
    "metadata_store_connection_retries": (int, 5),
    "mysql_config_host": (str, ""), "mysql_config_port": (int, 0),
    "mysql_config_database": (str, ""), "mysql_config_user": (str, ""),
    "mysql_config_password": (str, ""),
    "postgres_config_host": (str, ""), "postgres_config_hostaddr": (str, ""),
    "postgres_config_port": (str, ""), "postgres_config_user": (str, ""),
    "postgres_config_password": (str, ""), "postgres_config_passfile": (str, ""),
    "postgres_config_dbname": (str, ""), "postgres_config_skip_db_creation": (bool, False),
    "postgres_config_sslmode": (str, ""), "postgres_config_sslcert": (str, ""),
    "postgres_config_sslkey": (str, ""), "postgres_config_sslpassword": (str, ""),
    "postgres_config_sslrootcert": (str, ""),
    "enable_database_upgrade": (bool, False), "downgrade_db_schema_version": (int, -1),
}
# Flags the binary has that the stand-in accepts without acting on them: name -> (type, why).
_UNHONOURED: dict[str, tuple[type, str]] = {
    "metadata_store_connection_retries": (
        int, f"start-up retries every failure for ${_PREFIX.upper()}_CONNECT_SECONDS instead"),
    **{name: (kind, "glog's logging flag; the stand-in logs its own lines to stderr")
       for name, kind in {
           "logtostderr": bool, "alsologtostderr": bool, "colorlogtostderr": bool,
           "stderrthreshold": int, "minloglevel": int, "v": int, "vmodule": str, "log_dir": str,
           "log_prefix": bool, "max_log_size": int, "stop_logging_if_full_disk": bool,
       }.items()},
    **{name: (str, "gflags' flag-source flag; only the command line is read")
       for name in ("flagfile", "fromenv", "tryfromenv")},
}
_BOOLS = {"true": True, "t": True, "yes": True, "y": True, "1": True,
          "false": False, "f": False, "no": False, "n": False, "0": False}
_GFLAGS_TYPES = {int: "int32", str: "string", bool: "bool"}
_CONNECT_SECONDS = 60.0  # overridden by $ML_METADATA_STANDIN_CONNECT_SECONDS
_RETRY_SECONDS = 2.0
_GRACE_SECONDS = 5.0
_WORKERS = 8
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _log(message: str) -> None:
    print(f"{_PREFIX}: {message}", file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class StartupError(Exception):
    """A reason the server does not start, and the exit code the process ends with."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def parse_flags(args: list[str]) -> tuple[dict[str, object], set[str], list[str]]:
    """gflags' ParseCommandLineFlags: the values, the flags given, the other arguments."""
    flags = {**{name: kind for name, (kind, _) in _UNHONOURED.items()},
             **{name: kind for name, (kind, _) in _FLAGS.items()}}
    values: dict[str, object] = {name: default for name, (_, default) in _FLAGS.items()}
    given: set[str] = set()
    positional: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            positional += args[index:]
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, raw = arg.lstrip("-").partition("=")
        if name not in flags and name.startswith("no") and flags.get(name[2:]) is bool and not eq:
            name, eq, raw = name[2:], "=", "false"
        kind = flags.get(name)
        if kind is None:
            raise StartupError(f"ERROR: unknown command line flag '{name}'")
        if not eq and kind is bool:
            raw = "true"
        elif not eq:
            if index == len(args):
                raise StartupError(f"ERROR: flag '{arg}' is missing its argument")
            raw = args[index]
            index += 1
        if kind is bool and raw.lower() in _BOOLS:
            value: object = _BOOLS[raw.lower()]
        elif kind is int and re.fullmatch(r"[+-]?\d+", raw):
            value = int(raw)
        elif kind is str:
            value = raw
        else:
            raise StartupError(f"ERROR: illegal value '{raw}' specified for "
                               f"{_GFLAGS_TYPES[kind]} flag '{name}'")
        values[name] = value
        given.add(name)
    return values, given, positional


# --- the metadata source --------------------------------------------------------------------------

def _config_file(path: str) -> metadata_store_pb2.MetadataStoreServerConfig | None:
    """ParseMetadataStoreServerConfigOrDie: the config, or None (and why, on stderr)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return text_format.Parse(file.read(), metadata_store_pb2.MetadataStoreServerConfig())
    except (OSError, text_format.ParseError) as error:
        _log(f"cannot use --metadata_store_server_config_file={path}: {_one_line(str(error))}")
        return None


def _migration(values: dict, config: metadata_store_pb2.MetadataStoreServerConfig) -> None:
    """The MigrationOptions the flags ask for (ParseMySQLFlagsBasedServerConfigOrDie)."""
    if values["enable_database_upgrade"] and values["downgrade_db_schema_version"] >= 0:
        raise StartupError("Both --enable_database_upgraded=true and downgrade_db_schema_version "
                           ">= 0 cannot be set together. Only one of the flags needs to be set")
    if values["enable_database_upgrade"]:
        config.migration_options.enable_upgrade_migration = True
    if values["downgrade_db_schema_version"] >= 0:
        config.migration_options.downgrade_to_schema_version = values[
            "downgrade_db_schema_version"]


def _mysql_config(values: dict) -> metadata_store_pb2.MetadataStoreServerConfig | None:
    host, port, database = (values[f"mysql_config_{key}"] for key in ("host", "port", "database"))
    if not host and not database and port == 0:
        return None
    if not host or not database or port <= 0:
        raise StartupError("To use mysql store, all of --mysql_config_host, --mysql_config_port, "
                           "--mysql_config database needs to be provided")
    config = metadata_store_pb2.MetadataStoreServerConfig()
    mysql = config.connection_config.mysql
    mysql.host, mysql.port, mysql.database = host, port, database
    mysql.user, mysql.password = values["mysql_config_user"], values["mysql_config_password"]
    _migration(values, config)
    return config


def _postgres_config(values: dict) -> metadata_store_pb2.MetadataStoreServerConfig:
    """ParsePostgreSQLFlagsBasedServerConfigOrDie, CheckPostgreSQLConfig's checks first."""
    flag = {key: values[f"postgres_config_{key}"] for key in (
        "host", "hostaddr", "port", "user", "password", "passfile", "dbname",
        "skip_db_creation", "sslmode", "sslcert", "sslkey", "sslpassword", "sslrootcert")}
    if bool(flag["host"]) == bool(flag["hostaddr"]):
        problem = "exactly one of postgres_config_host or postgres_config_hostaddr must be given"
    else:
        problem = next((f"postgres_config_{key} must not be empty"
                        for key in ("port", "dbname", "user") if not flag[key]), "")
    if problem:
        raise StartupError(f"{problem}: Unable to construct server config using postgresql flags.",
                           255)
    config = metadata_store_pb2.MetadataStoreServerConfig()
    postgresql = config.connection_config.postgresql
    for key in ("host", "hostaddr", "port", "user", "password", "passfile", "dbname"):
        if flag[key]:
            setattr(postgresql, key, flag[key])
    if flag["skip_db_creation"]:
        postgresql.skip_db_creation = True
    for key in ("sslmode", "sslcert", "sslkey", "sslpassword", "sslrootcert"):
        if flag[key]:
            setattr(postgresql.ssloption, key, flag[key])
    _migration(values, config)
    return config


def server_config(values: dict) -> metadata_store_pb2.MetadataStoreServerConfig:
    """main.cc's choice of metadata source, by --metadata_source_config_type."""
    kind = values["metadata_source_config_type"]
    if kind == "default":
        config = _config_file(values["metadata_store_server_config_file"])
        config = config or _mysql_config(values)
        if config is None:
            _log("The connection_config is not given. Using in memory fake database, any "
                 "metadata will not be persistent")
            config = metadata_store_pb2.MetadataStoreServerConfig()
            config.connection_config.fake_database.SetInParent()
    elif kind in ("config_file", "mysql"):
        config = (_config_file(values["metadata_store_server_config_file"]) if kind == "config_file"
                  else _mysql_config(values))
        if config is None:
            raise StartupError("Unable to construct server config based on arguments.", 255)
    elif kind == "postgresql":
        config = _postgres_config(values)
    else:
        raise StartupError("metadata_source_config_type is invalid: provide value in one of the "
                           "followings: default, config_file, mysql, postgresql.", 255)
    return config


def describe(connection: metadata_store_pb2.ConnectionConfig) -> str:
    """The metadata source in one line, without its password."""
    kind = connection.WhichOneof("config")
    if kind == "mysql":
        mysql = connection.mysql
        where = mysql.socket or f"{mysql.host}:{mysql.port}"
        created = "" if mysql.skip_db_creation else ", created if missing"
        return f"MySQL {where}, database {mysql.database}{created}, user {mysql.user!r}"
    if kind == "sqlite":
        return f"SQLite {connection.sqlite.filename_uri}"
    if kind == "postgresql":
        pg = connection.postgresql
        return f"PostgreSQL {pg.host or pg.hostaddr}:{pg.port}, database {pg.dbname}"
    if kind == "fake_database":
        return "an in-memory SQLite database per call (fake_database)"
    return f"no database ({kind})"


def channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """AddGrpcChannelArgs: comma-separated key=value pairs, integer values as integers."""
    options: list[tuple[str, int | str]] = []
    for argument in filter(None, text.split(",")):
        key_value = [part for part in argument.split("=") if part]
        if len(key_value) < 2:
            raise StartupError(f"--grpc_channel_arguments: {argument!r} is not key=value")
        key, value = key_value[0], key_value[1]
        options.append((key, int(value) if re.fullmatch(r"\s*[+-]?\d+\s*", value) else value))
    return options


def connect(config: metadata_store_pb2.MetadataStoreServerConfig, seconds: float) -> None:
    """Creates the store once with the migration options (the database, the schema), retrying
    a failure every _RETRY_SECONDS for `seconds`; raises StartupError when it gives up."""
    connection = config.connection_config.SerializeToString()
    migration = config.migration_options
    deadline = time.monotonic() + seconds
    attempt = 0
    while not _STOP.is_set():
        attempt += 1
        try:
            _binding.CreateMetadataStore(connection, migration.SerializeToString())
            return  # the store is dropped at once, its connection closed, as main.cc does
        except RuntimeError as error:
            message = _one_line(str(error))
        if migration.downgrade_to_schema_version >= 0:
            raise StartupError(f"MetadataStore cannot be created: {message}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise StartupError(f"MetadataStore cannot be created with the given connection config "
                               f"after {attempt} attempts in {seconds:g} s: {message}")
        _log(f"connect attempt {attempt} failed: {message}; retrying for {left:.0f} s more")
        _STOP.wait(min(_RETRY_SECONDS, left))


# --- the service ----------------------------------------------------------------------------------

def _method_handler(name: str, connection: bytes) -> grpc.RpcMethodHandler:
    """A unary handler that passes bytes to the binding's method `name` on a new store."""
    method = getattr(_binding, name, None)

    if method is None:
        def unimplemented(request: bytes, context: grpc.ServicerContext) -> bytes:
            _log(f"{name} failed: UNIMPLEMENTED")
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"{name} is not implemented by metadata_store_server 1.14.0 nor by the "
                          f"ML Metadata stand-in ({_PREFIX})")

        return grpc.unary_unary_rpc_method_handler(unimplemented)

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            store = _binding.CreateMetadataStore(connection, b"")
        except RuntimeError as error:
            _log(f"Failed to connect to the database ({name}): {_one_line(str(error))}")
            context.abort(grpc.StatusCode.INTERNAL, str(error))
        response, message, code = method(store, request)
        del store  # closes its connection in this thread, before the answer, as the real one
        if code:
            status = _CODES.get(code, grpc.StatusCode.UNKNOWN)
            details = message.decode("utf-8", "replace")
            _log(f"{name} failed: {status.name}: {_one_line(details)}")
            context.abort(status, details)
        return response

    return grpc.unary_unary_rpc_method_handler(call)


def service_handler(connection: metadata_store_pb2.ConnectionConfig) -> grpc.GenericRpcHandler:
    """MetadataStoreService: every method of its descriptor, as bytes in and bytes out."""
    streaming = [m.name for m in SERVICE.methods if m.client_streaming or m.server_streaming]
    if streaming:  # none in 1.14.0 or 1.16.0; the binding could not serve one
        raise StartupError(f"streaming methods {streaming}: the stand-in serves unary ones only")
    serialized = connection.SerializeToString()
    return grpc.method_handlers_generic_handler(
        SERVICE.full_name, {m.name: _method_handler(m.name, serialized) for m in SERVICE.methods})


def unimplemented_methods() -> list[str]:
    """The service's methods the binding, and so the stand-in, does not serve."""
    return [m.name for m in SERVICE.methods if not hasattr(_binding, m.name)]


def serve(config: metadata_store_pb2.MetadataStoreServerConfig, port: int,
          options: list[tuple[str, int | str]]) -> grpc.Server:
    """Builds and starts the gRPC server on 0.0.0.0:port, as main.cc does."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=_WORKERS), options=options)
    server.add_generic_rpc_handlers((service_handler(config.connection_config),))
    address = f"0.0.0.0:{port}"
    try:
        if config.HasField("ssl_config"):
            ssl = config.ssl_config
            credentials = grpc.ssl_server_credentials(
                [(ssl.server_key.encode(), ssl.server_cert.encode())],
                root_certificates=ssl.custom_ca.encode() or None,
                require_client_auth=ssl.client_verify)
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except (RuntimeError, ValueError) as error:  # gRPC raises or returns 0, by version
        raise StartupError(f"cannot listen on {address}: {error}") from error
    if not bound:
        raise StartupError(f"cannot listen on {address}")
    server.start()
    return server


def main(argv: list[str]) -> int:
    try:
        values, given, positional = parse_flags(argv[1:])
    except StartupError as error:
        print(error, file=sys.stderr, flush=True)
        return error.exit_code
    for name in sorted(given & _UNHONOURED.keys()):
        value = str(values[name]).lower() if isinstance(values[name], bool) else values[name]
        _log(f"cannot honour --{name}={value} ({_UNHONOURED[name][1]}); ignored")
    if positional:
        _log(f"ignoring {' '.join(positional)}, as metadata_store_server does")
    try:
        seconds = float(os.environ.get(f"{_PREFIX.upper()}_CONNECT_SECONDS", _CONNECT_SECONDS))
    except ValueError as error:
        _log(f"${_PREFIX.upper()}_CONNECT_SECONDS: {error}")
        return 1
    try:
        if values["grpc_port"] <= 0:
            raise StartupError(f"grpc_port is invalid: {values['grpc_port']}", 255)
        config = server_config(values)
        options = channel_arguments(values["grpc_channel_arguments"])
        migration = config.migration_options
        _log(f"metadata source: {describe(config.connection_config)}; upgrade migration "
             f"{'on' if migration.enable_upgrade_migration else 'off'}"
             + (f", downgrade to schema version {migration.downgrade_to_schema_version}"
                if migration.downgrade_to_schema_version >= 0 else ""))
        connect(config, seconds)
        if _STOP.is_set():
            _log("stopped on a signal before serving")
            return 0
        _log("store connected; database and schema ready")
        server = serve(config, values["grpc_port"], options)
    except StartupError as error:
        _log(str(error))
        return error.exit_code
    missing = unimplemented_methods()
    _log(f"Server listening on 0.0.0.0:{values['grpc_port']}"
         f"{' (TLS)' if config.HasField('ssl_config') else ''}: {SERVICE.full_name}, "
         f"{len(SERVICE.methods) - len(missing)} methods, UNIMPLEMENTED {', '.join(missing)}; "
         f"channel arguments {options}")
    _STOP.wait()
    _log(f"stopping on a signal, {_GRACE_SECONDS:g} s grace")
    server.stop(_GRACE_SECONDS).wait()
    _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
