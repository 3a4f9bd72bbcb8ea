#!/usr/bin/env python3
"""TF Serving stand-in: a Python program in place of ``tensorflow_model_server`` 2.16.1.

It is NOT TensorFlow Serving. It exists because the C++ server (image tensorflow/serving:2.16.1)
cannot be had where the local cluster runs (no registry, no Docker); the stand-in image installs
this file as /usr/bin/tensorflow_model_server so that helm/tf-serving, its helm test and the
Kubernetes InfraValidator run unchanged. Every line it logs starts with ``tf_serving_standin:``.
What it reproduces was read in TF Serving's 2.16.1 sources (paths under tensorflow_serving/):

- flags (model_servers/main.cc, TensorFlow's command_line_flags.cc): every flag of 2.16.1, only
  in the ``--flag=value`` form (booleans also bare); a malformed value prints the usage and exits
  255; an unknown argument prints ``unknown argument: ...`` and the usage and the server starts
  anyway, as the real one does. Flags the stand-in cannot honour are named on stderr.
- start-up (server.cc, server_core.cc): the config checks, version labels refused without
  --allow_version_labels_for_unavailable_models, and neither port listening until the newest
  version of every model is AVAILABLE; if it ends in error instead, the process exits 255.
- versions (sources/storage_path/file_system_storage_path_source.cc,
  core/availability_preserving_policy.cc, core/loader_harness.cc): integer-named children of
  each base path, chosen by the latest/all/specific policy, polled every
  --file_system_poll_wait_seconds (0: once); the highest new version loads first, one at a time,
  with --max_num_load_retries retries --load_retry_interval_micros apart; an un-aspired version
  is unloaded once an aspired one is AVAILABLE, and a failed one ends in END with its error.
- APIs: REST (http_server.cc, http_rest_api_handler.cc, http_rest_api_util.cc,
  util/json_tensor.cc) for status, metadata and predict in row and columnar form, with TF
  Serving's error JSON, HTTP codes and quirks (the status of /labels/<label> lists every
  version); gRPC PredictionService Predict and GetModelMetadata, ModelService GetModelStatus and,
  with --enable_grpc_healthcheck_service, grpc.health.v1.Health serving "", "ModelService" and
  "PredictionService" (server.cc); Prometheus text (util/prometheus_exporter.cc) with
  request_count, request_latency, runtime_latency (servables/tensorflow/util.cc) and
  TensorFlow's SavedModel load_attempt_count and load_latency.

Not reproduced: batching, warmup replay, Classify/Regress/MultiInference and config reloads
(UNIMPLEMENTED), CORS, TLS, the profiler, TFLite, session tuning, any other metric, an
observable UNLOADING state (unloads are instant), the official image's entrypoint script.
SavedModels run through tf.saved_model.load, not a TF1 Session; gs:// base paths go through
TensorFlow's file systems and have never been tried. On SIGTERM it exits 0 at once (the real
server has no handler and dies of the signal). TF_SERVING_STANDIN_HOST sets the listening
address (default 0.0.0.0, as the real one). The stand-in writes no files; TensorFlow may use
/tmp.
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PREFIX = "tf_serving_standin"
_STOP = threading.Event()  # set by SIGTERM or SIGINT

# The first line of the log, before TensorFlow's import logs lines of its own; the signal
# handlers come first too, so that a pod deleted during that import still exits 0.
if __name__ == "__main__":
    print(f"{_PREFIX}: this is the TF Serving stand-in (tests/standins/tf_serving), not "
          "tensorflow_model_server: it serves SavedModels the way TF Serving 2.16.1 does, "
          "for tests only", file=sys.stderr, flush=True)
    for _signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_signal, lambda *_: _STOP.set())

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import descriptor_pb2, json_format, message_factory, text_format  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from tensorflow.core.framework import tensor_pb2  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

# --- flags, constants -----------------------------------------------------------------------------

_CPUS = os.cpu_count() or 1
# Every flag of main.cc, in its order: name -> (type, default).
_FLAGS: dict[str, tuple[type, object]] = {
    "port": (int, 8500), "grpc_socket_path": (str, ""), "rest_api_port": (int, 0),
    "rest_api_num_threads": (int, 4 * _CPUS), "rest_api_timeout_in_ms": (int, 30000),
    "rest_api_enable_cors_support": (bool, False), "enable_batching": (bool, False),
    "allow_version_labels_for_unavailable_models": (bool, False),
    "batching_parameters_file": (str, ""), "enable_per_model_batching_parameters": (bool, False),
    "model_config_file": (str, ""), "model_config_file_poll_wait_seconds": (int, 0),
    "model_name": (str, "default"), "model_base_path": (str, ""), "num_load_threads": (int, 0),
    "num_unload_threads": (int, 0), "max_num_load_retries": (int, 5),
    "load_retry_interval_micros": (int, 60_000_000), "file_system_poll_wait_seconds": (int, 1),
    "flush_filesystem_caches": (bool, True), "tensorflow_session_parallelism": (int, 0),
    "tensorflow_session_config_file": (str, ""), "tensorflow_intra_op_parallelism": (int, 0),
    "tensorflow_inter_op_parallelism": (int, 0), "use_alts_credentials": (bool, False),
    "ssl_config_file": (str, ""), "platform_config_file": (str, ""),
    "per_process_gpu_memory_fraction": (float, 0.0), "saved_model_tags": (str, "serve"),
    "grpc_channel_arguments": (str, ""), "grpc_max_threads": (int, 4 * _CPUS),
    "enable_model_warmup": (bool, True), "num_request_iterations_for_warmup": (int, 0),
    "version": (bool, False), "monitoring_config_file": (str, ""),
    "remove_unused_fields_from_bundle_metagraph": (bool, True),
    "prefer_tflite_model": (bool, False), "num_tflite_pools": (int, _CPUS),
    "num_tflite_interpreters_per_pool": (int, 1),
    "enable_signature_method_name_check": (bool, False),
    "xla_cpu_compilation_enabled": (bool, False), "enable_profiler": (bool, True),
    "thread_pool_factory_config_file": (str, ""), "mixed_precision": (str, ""),
    "skip_initialize_tpu": (bool, False), "enable_grpc_healthcheck_service": (bool, False),
}
# Flags whose effect the stand-in lacks: name -> (the value it behaves as, None for no value;
# why). A flag given with any other value is named on stderr. The flags not listed here are
# honoured, or have nothing to act on (caches, TPUs).
_UNHONOURED: dict[str, tuple[object, str]] = {
    "enable_batching": (False, "no batching in the stand-in"),
    "batching_parameters_file": ("", "no batching in the stand-in"),
    "enable_per_model_batching_parameters": (False, "no batching in the stand-in"),
    "enable_model_warmup": (False, "warmup requests are not replayed"),
    "num_request_iterations_for_warmup": (0, "warmup requests are not replayed"),
    "rest_api_num_threads": (None, "a thread per REST connection"),
    "rest_api_timeout_in_ms": (None, "REST requests have no deadline"),
    "rest_api_enable_cors_support": (False, "no CORS headers"),
    "model_config_file_poll_wait_seconds": (0, "the model config file is read once"),
    "num_load_threads": (0, "versions load one at a time"),
    "num_unload_threads": (0, "versions unload one at a time"),
    "tensorflow_session_parallelism": (0, "TensorFlow sizes its own thread pools"),
    "tensorflow_session_config_file": ("", "no TF1 session"),
    "tensorflow_intra_op_parallelism": (0, "TensorFlow sizes its own thread pools"),
    "tensorflow_inter_op_parallelism": (0, "TensorFlow sizes its own thread pools"),
    "use_alts_credentials": (False, "plaintext gRPC only"),
    "ssl_config_file": ("", "plaintext gRPC only"),
    "platform_config_file": ("", "TensorFlow SavedModels only"),
    "per_process_gpu_memory_fraction": (0.0, "CPU only"),
    "grpc_channel_arguments": ("", "channel arguments are not passed to gRPC"),
    "prefer_tflite_model": (False, "TensorFlow SavedModels only"),
    "num_tflite_pools": (None, "TensorFlow SavedModels only"),
    "num_tflite_interpreters_per_pool": (None, "TensorFlow SavedModels only"),
    "enable_signature_method_name_check": (False, "signature method names are not checked"),
    "xla_cpu_compilation_enabled": (False, "TensorFlow's own XLA setting applies"),
    "enable_profiler": (False, "no profiler service"),
    "thread_pool_factory_config_file": ("", "no custom thread pools"),
    "mixed_precision": ("", "no mixed precision"),
}
_INT_FLAG = re.compile(r"\s*[+-]?\d+")  # what sscanf("%d%c") takes whole
_VERSION_DIR = re.compile(r"\s*[+-]?\d+\s*")  # what safe_strto64 takes
_HTTP_STATUS = {  # http_server.cc ToHTTPStatusCode
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# tensorflow.error.Code and grpc.StatusCode share their numbers.
_CODE_NUMBERS = {code.name: code.value[0] for code in grpc.StatusCode}
_CODE_NAMES = {number: name for name, number in _CODE_NUMBERS.items()}
# http_rest_api_util.cc kPredictionApiGegex and kModelStatusApiRegex.
_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)", re.I)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?", re.I)
_DEFAULT_SIGNATURE = "serving_default"
_DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
_MAX_MESSAGE = 2**31 - 1  # server.cc: builder.SetMaxMessageSize(kint32max)


def _log(message: str) -> None:
    print(f"{_PREFIX}: {message}", file=sys.stderr, flush=True)


class ServingError(Exception):
    """A status other than OK: a tensorflow.error.Code name and TF Serving's message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def parse_flags(args: list[str]) -> tuple[dict[str, object], set[str], list[str], bool]:
    """TensorFlow's Flags::Parse: values, the flags given, unknown arguments, all values valid."""
    values = {name: default for name, (_, default) in _FLAGS.items()}
    given: set[str] = set()
    unknown: list[str] = []
    valid = True
    for index, arg in enumerate(args):
        if arg == "--":
            unknown += args[index:]
            break
        name, eq, raw = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        kind = _FLAGS[name][0] if name in _FLAGS else None
        if kind is None or (kind is not bool and not eq):  # only bools go without "=value"
            unknown.append(arg)
            continue
        given.add(name)
        if kind is bool and (not eq or raw in ("true", "false")):
            values[name] = not eq or raw == "true"
        elif kind is int and _INT_FLAG.fullmatch(raw):
            values[name] = int(raw)
        elif kind is float and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", raw):
            values[name] = float(raw)
        elif kind is str:
            values[name] = raw
        else:
            print(f"Couldn't interpret value {eq}{raw} for flag {name}.", file=sys.stderr)
            valid = False
    return values, given, unknown, valid and unknown[:1] != ["--help"]


def _usage(program: str) -> str:
    types = {int: "int32", str: "string", bool: "bool", float: "float"}
    flags = [f"--{name}={_text(default)}\t{types[kind]}"
             for name, (kind, default) in _FLAGS.items()]
    return f"usage: {program}\nFlags:\n\t" + "\n\t".join(flags) + "\n"


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- config files ---------------------------------------------------------------------------------

def _parse_text_file(path: str, proto):
    """util/proto_util.h ParseProtoTextFile; the parser's reason goes to stderr."""
    try:
        with open(path, encoding="utf-8") as file:
            return text_format.Parse(file.read(), proto)
    except OSError as error:
        raise ServingError("NOT_FOUND", f"{path}; {error.strerror}") from error
    except text_format.ParseError as error:
        _log(f"{path}: {error}")
        raise ServingError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}'") from error


# config/monitoring_config.proto, which no pip package ships, declared here.
_MONITORING_PROTO = text_format.Parse("""
    name: "tf_serving_standin/monitoring_config.proto" package: "tensorflow.serving"
    syntax: "proto3"
    message_type { name: "PrometheusConfig"
      field { name: "enable" number: 1 type: TYPE_BOOL label: LABEL_OPTIONAL }
      field { name: "path" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL } }
    message_type { name: "MonitoringConfig"
      field { name: "prometheus_config" number: 1 type: TYPE_MESSAGE label: LABEL_OPTIONAL
              type_name: ".tensorflow.serving.PrometheusConfig" } }
""", descriptor_pb2.FileDescriptorProto())


def monitoring_config(path: str) -> str | None:
    """The Prometheus path a MonitoringConfig file sets, None when Prometheus is off."""
    messages = message_factory.GetMessages([_MONITORING_PROTO])
    parsed = _parse_text_file(path, messages["tensorflow.serving.MonitoringConfig"]())
    parsed = parsed.prometheus_config
    return (parsed.path or _DEFAULT_METRICS_PATH) if parsed.enable else None


# --- metrics --------------------------------------------------------------------------------------

class Metrics:
    """The TF Serving and TensorFlow metrics the stand-in keeps (util/prometheus_exporter.cc)."""

    # Buckets::Exponential(10, 1.8, 33) and the overflow bucket TensorFlow adds.
    _LIMITS = [10 * 1.8**i for i in range(33)] + [sys.float_info.max]
    _KINDS = {  # listed in the order of TensorFlow's metric names, as the exporter does
        ":tensorflow:cc:saved_model:load_attempt_count": "counter",
        ":tensorflow:cc:saved_model:load_latency": "counter",
        ":tensorflow:serving:request_count": "counter",
        ":tensorflow:serving:request_latency": "histogram",
        ":tensorflow:serving:runtime_latency": "histogram",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[str, dict[tuple, list[float]]] = {name: {} for name in self._KINDS}

    def add(self, name: str, value: float, **labels: str) -> None:
        """Adds value to a counter, or records it in a histogram."""
        with self._lock:
            if self._KINDS[name] == "counter":
                self._cells[name].setdefault(tuple(labels.items()), [0])[0] += value
                return
            cell = self._cells[name].setdefault(tuple(labels.items()),
                                                [0] * len(self._LIMITS) + [0.0])
            cell[bisect.bisect_right(self._LIMITS, value)] += 1
            cell[-1] += value

    def page(self) -> str:
        lines = []
        with self._lock:
            for name, kind in self._KINDS.items():
                lines.append(f"# TYPE {name} {kind}")
                for key, cell in self._cells[name].items():
                    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                    if kind == "counter":
                        lines.append(f"{name}{{{labels}}} {int(cell[0])}")
                        continue
                    prefix, total = f"{name}_bucket{{{labels}{',' if labels else ''}", 0
                    for index, count in enumerate(cell[:-1]):
                        total += count
                        last = index == len(self._LIMITS) - 1
                        le = "+Inf" if last else f"{self._LIMITS[index]:.6g}"
                        lines.append(f'{prefix}le="{le}"}} {total}')
                    lines.append(f"{name}_sum{{{labels}}} {cell[-1]:.6g}")
                    lines.append(f"{name}_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# --- versions: loading, serving, unloading --------------------------------------------------------

class Servable:
    """A loaded version: its signature defs as TF Serving reads them, and its functions."""

    def __init__(self, path: str, tags: list[str]):
        saved_model = saved_model_pb2.SavedModel()
        pb_path = os.path.join(path, "saved_model.pb")
        pbtxt_path = os.path.join(path, "saved_model.pbtxt")
        if tf.io.gfile.exists(pb_path):
            with tf.io.gfile.GFile(pb_path, "rb") as file:
                data = file.read()
            try:
                saved_model.ParseFromString(data)
            except Exception as error:  # protobuf's DecodeError differs between its back ends
                raise ServingError("DATA_LOSS", f"Can't parse {pb_path} as binary proto") from error
        elif tf.io.gfile.exists(pbtxt_path):
            with tf.io.gfile.GFile(pbtxt_path) as file:
                text_format.Parse(file.read(), saved_model)
        else:  # TensorFlow's cc/saved_model/reader.cc
            raise ServingError(
                "NOT_FOUND", "Could not find SavedModel .pb or .pbtxt at supplied export directory "
                f"path: {path}. Check that the directory exists and that you have the right "
                "permissions for accessing it.")
        graphs = [g for g in saved_model.meta_graphs if set(g.meta_info_def.tags) == set(tags)]
        if not graphs:
            raise ServingError(
                "NOT_FOUND", f"Could not find meta graph def matching supplied tags: "
                f"{{ {' '.join(tags)} }}. To inspect available tag-sets in the SavedModel, please "
                "use the SavedModel CLI: `saved_model_cli`")
        self.signature_defs = dict(graphs[0].signature_def)
        self._loaded = tf.saved_model.load(path, tags=tags)

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray],
                output_filter: list[str]) -> tuple[str, dict[str, np.ndarray]]:
        """servables/tensorflow/predict_util.cc RunPredict: the signature key and the outputs."""
        key = signature_name or _DEFAULT_SIGNATURE
        if key not in self.signature_defs or key not in self._loaded.signatures:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        signature = self.signature_defs[key]
        if len(inputs) != len(signature.inputs):
            sent, wanted = set(inputs), set(signature.inputs)
            raise ServingError(
                "INVALID_ARGUMENT", f"input size does not match signature: {len(sent)}!="
                f"{len(wanted)} len({{{_join(sent)}}}) != len({{{_join(wanted)}}}). Sent extra: "
                f"{{{_join(sent - wanted)}}}. Missing but required: {{{_join(wanted - sent)}}}.")
        for alias in inputs:
            if alias not in signature.inputs:
                raise ServingError(
                    "INVALID_ARGUMENT", f"input tensor alias not found in signature: {alias}. "
                    f"Inputs expected to be in the set {{{_join(signature.inputs)}}}.")
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    "INVALID_ARGUMENT", f"output tensor alias not found in signature: {alias} "
                    f"Outputs expected to be in the set {{{_join(signature.outputs)}}}.")
        function = self._loaded.signatures[key]
        try:
            outputs = function(**{alias: tf.constant(value) for alias, value in inputs.items()})
        except tf.errors.OpError as error:
            code = _CODE_NAMES.get(error.error_code, "UNKNOWN")
            raise ServingError(code, error.message) from error
        except (TypeError, ValueError) as error:  # a dtype or shape the signature does not take
            raise ServingError("INVALID_ARGUMENT", str(error)) from error
        return key, {alias: outputs[alias].numpy() for alias in output_filter or sorted(outputs)}


def _join(names) -> str:
    return ",".join(sorted(names))


@dataclass
class Version:
    """A version as the manager (its harness) and the state monitor see it."""

    number: int
    path: str
    state: str = "START"  # get_model_status.proto ModelVersionStatus.State
    error_code: str = "OK"
    error_message: str = ""
    managed: bool = True  # False once the manager is done with it; the monitor keeps it
    aspired: bool = True
    servable: Servable | None = None


@dataclass
class Model:
    """A model_config_list entry and every version of it the monitor has seen."""

    name: str
    base_path: str
    policy: str  # "latest", "all" or "specific"
    latest: int = 1
    specific: frozenset[int] = frozenset()
    labels: dict[str, int] = field(default_factory=dict)
    versions: dict[int, Version] = field(default_factory=dict)


def load_config(options: dict) -> list[Model]:
    """The ModelServerConfig of the flags, checked as server_core.cc checks it."""
    if options["model_config_file"]:
        config = _parse_text_file(options["model_config_file"],
                                  model_server_config_pb2.ModelServerConfig())
        if config.WhichOneof("config") != "model_config_list":
            raise ServingError("INVALID_ARGUMENT", "Invalid ServerModelConfig")
        entries = list(config.model_config_list.config)
    else:
        entries = [model_server_config_pb2.ModelConfig(
            name=options["model_name"], base_path=options["model_base_path"],
            model_platform="tensorflow")]
    models: list[Model] = []
    for entry in entries:
        if any(model.name == entry.name for model in models):
            raise ServingError("INVALID_ARGUMENT",
                               f"Illegal to list model {entry.name} multiple times in config list")
        if "://" not in entry.base_path and not entry.base_path.startswith("/"):
            raise ServingError("INVALID_ARGUMENT", f"Expected model {entry.name} to have an "
                               f"absolute path or URI; got base_path()={entry.base_path}")
        platform = "tensorflow" if entry.model_type == 1 else entry.model_platform
        if platform != "tensorflow":
            raise ServingError("INVALID_ARGUMENT",
                               f"Model {entry.name} requests unsupported platform {platform}")
        if entry.base_path.startswith("gs://"):
            _log(f"{entry.base_path}: the stand-in reads gs:// through TensorFlow's file systems "
                 "and has never been run against GCS")
        labels = dict(entry.version_labels)
        if labels and not options["allow_version_labels_for_unavailable_models"]:
            # ServerCore checks labels against loaded versions before loading any.
            number = min(labels.items())[1]
            raise ServingError(
                "FAILED_PRECONDITION", f"Request to assign label to version {number} of model "
                f"{entry.name}, which is not currently available for inference")
        policy = entry.model_version_policy
        models.append(Model(
            entry.name, entry.base_path, policy.WhichOneof("policy_choice") or "latest",
            latest=max(policy.latest.num_versions, 1),
            specific=frozenset(policy.specific.versions), labels=labels))
    return models


class Core:
    """ServerCore: polls base paths, loads and unloads versions, resolves model specs."""

    def __init__(self, models: list[Model], options: dict, stop: threading.Event):
        self.models = {model.name: model for model in models}
        self.metrics = Metrics()
        self._options = options
        self._stop = stop
        self._changed = threading.Condition()  # guards every Version's fields

    def poll_forever(self) -> None:
        """FileSystemStoragePathSource's thread; a wait of 0 polls once, a negative one never."""
        wait = self._options["file_system_poll_wait_seconds"]
        while wait >= 0 and not self._stop.is_set():
            for model in self.models.values():
                self._aspire(model)
                while not self._stop.is_set() and self._next_action(model):
                    pass
            if wait == 0 or self._stop.wait(wait):
                return

    def _aspire(self, model: Model) -> None:
        """Marks the versions the policy chooses under the base path as aspired, the rest not."""
        try:
            children = [c.rstrip("/") for c in tf.io.gfile.listdir(model.base_path)]
        except tf.errors.OpError as error:
            _log(f"FileSystemStoragePathSource encountered a filesystem access error: Could not "
                 f"find base path {model.base_path} for servable {model.name} with error {error}")
            return
        found = {int(c): c for c in sorted(children)
                 if _VERSION_DIR.fullmatch(c) and abs(int(c)) < 2**63}
        if model.policy == "all":
            aspired = set(found)
        elif model.policy == "specific":
            aspired = set(found) & model.specific
        else:
            aspired = set(sorted(found)[-model.latest:])
        if not aspired:
            _log(f"No versions of servable {model.name} found under base path {model.base_path}. "
                 "Did you forget to name your leaf directory as a number (eg. '/1/')?")
        with self._changed:
            for version in model.versions.values():
                if version.managed:
                    version.aspired = version.number in aspired
                    # FlushServables: an un-aspired version that never loaded or failed goes.
                    version.managed = version.aspired or version.state == "AVAILABLE"
            for number in aspired - {v.number for v in model.versions.values() if v.managed}:
                path = os.path.join(model.base_path, found[number])
                model.versions[number] = Version(number, path)
            self._changed.notify_all()

    def _next_action(self, model: Model) -> bool:
        """core/availability_preserving_policy.cc; False when there is nothing to do."""
        with self._changed:
            managed = [v for v in model.versions.values() if v.managed]
            aspired = [v for v in managed if v.aspired]
            unaspired_ready = sorted(
                (v for v in managed if not v.aspired and v.state == "AVAILABLE"),
                key=lambda v: v.number)
            serving = any(v.state == "AVAILABLE" for v in aspired)
            if unaspired_ready and (not aspired or serving or len(unaspired_ready) > 1):
                version = unaspired_ready[0]
                _log(f"Unloading servable version {{name: {model.name} version: {version.number}}}")
                version.state, version.servable, version.managed = "END", None, False
                self._changed.notify_all()
                return True
            new = [v for v in aspired if v.state == "START"]
            if not new:
                return False
            version = max(new, key=lambda v: v.number)
            version.state = "LOADING"
            self._changed.notify_all()
        self._load(model, version)
        return True

    def _load(self, model: Model, version: Version) -> None:
        """LoaderHarness::Load with util/retrier.cc's retries, the lock released meanwhile."""
        tags = [tag for tag in self._options["saved_model_tags"].split(",") if tag]
        interval = max(self._options["load_retry_interval_micros"], 0) / 1e6
        servable_id = f"{{name: {model.name} version: {version.number}}}"
        _log(f"Loading servable version {servable_id}")
        for attempt in range(max(self._options["max_num_load_retries"], 0) + 1):
            if attempt and self._stop.wait(interval):
                return
            start = time.monotonic()
            try:
                servable = Servable(version.path, tags)
            except Exception as error:  # whatever stops a load fails this version only
                failure = error if isinstance(error, ServingError) else ServingError(
                    _CODE_NAMES.get(getattr(error, "error_code", None), "UNKNOWN"), str(error))
                self.metrics.add(":tensorflow:cc:saved_model:load_attempt_count", 1,
                                 model_path=version.path, status="fail")
                _log(f"Loading servable: {servable_id} failed: {failure}")
                continue
            self.metrics.add(":tensorflow:cc:saved_model:load_attempt_count", 1,
                             model_path=version.path, status="success")
            self.metrics.add(":tensorflow:cc:saved_model:load_latency",
                             (time.monotonic() - start) * 1e6, model_path=version.path)
            with self._changed:
                version.state, version.servable = "AVAILABLE", servable
                self._changed.notify_all()
            _log(f"Successfully loaded servable version {servable_id}")
            return
        with self._changed:
            version.state, version.error_code, version.error_message = (
                "END", failure.code, failure.message)
            self._changed.notify_all()

    def wait_until_available(self) -> None:
        """ServerCore::WaitUntilModelsAvailable: raises if a model's newest version ended."""
        def newest_settled() -> dict[str, Version] | None:
            found = {}
            for model in self.models.values():
                settled = [v for v in model.versions.values() if v.state in ("AVAILABLE", "END")]
                if not settled:
                    return None
                found[model.name] = max(settled, key=lambda v: v.number)
            return found

        with self._changed:
            while (settled := newest_settled()) is None:
                if self._stop.is_set():
                    return
                self._changed.wait(1)
        failed = "".join(
            f"{{{{name: {name} version: {v.number}}} due to error: {v.error_code}: "
            f"{v.error_message}}}, " for name, v in settled.items() if v.state != "AVAILABLE")
        if failed:
            raise ServingError("UNKNOWN", f"{failed.count('due to error')} model(s) did not "
                               f"become available: {{{failed}}}")

    def handle(self, name: str, version: int | None, label: str | None) -> tuple[int, Servable]:
        """ServerCore::GetServableHandle: the version a model spec names, if it is AVAILABLE."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        model = self.models.get(name)
        if label is not None:
            if model is None or label not in model.labels:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        with self._changed:
            available = {v.number: v.servable for v in (model.versions.values() if model else ())
                         if v.state == "AVAILABLE"}
        if version is None and available:
            version = max(available)
        if version in available:
            return version, available[version]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise ServingError("NOT_FOUND", f"Servable not found for request: {request}")

    def status(self, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatusImpl: one version, or all the monitor knows, newest first."""
        model = self.models.get(name)
        with self._changed:
            known = {n: (v.state, v.error_code, v.error_message)
                     for n, v in (model.versions.items() if model else ())}
        if version is not None and version not in known:
            raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
        if not known:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in [version] if version is not None else sorted(known, reverse=True):
            state, code, message = known[number]
            response.model_version_status.add(
                version=number, state=get_model_status_pb2.ModelVersionStatus.State.Value(state),
                status=status_pb2.StatusProto(error_code=_CODE_NUMBERS[code],
                                              error_message=message))
        return response

    def metadata(self, name: str, version: int | None, label: str | None
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadataImpl for the one field it knows, signature_def."""
        number, servable = self.handle(name, version, label)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = number
        response.metadata["signature_def"].Pack(signatures)
        return response

    def predict(self, name: str, servable: Servable, signature_name: str,
                inputs: dict[str, np.ndarray], output_filter: list[str]
                ) -> tuple[str, dict[str, np.ndarray]]:
        """Servable.predict, recording TF Serving's runtime latency."""
        start = time.monotonic()
        result = servable.predict(signature_name, inputs, output_filter)
        self.metrics.add(":tensorflow:serving:runtime_latency", (time.monotonic() - start) * 1e6,
                         model_name=name, API="Predict", runtime="TF1")
        return result


# --- REST -----------------------------------------------------------------------------------------

def _is_object(value: object) -> bool:
    """A JSON object naming tensors, as opposed to a value or {"b64": ...} (json_tensor.cc)."""
    base64_object = isinstance(value, dict) and list(value) == ["b64"] and isinstance(
        value["b64"], str)
    return isinstance(value, dict) and not base64_object


def _array(value: object, dtype: tf.DType) -> np.ndarray:
    """A JSON value as a dense tensor of the signature's dtype; strings may be {"b64": ...}."""
    def string(item: object) -> object:
        if isinstance(item, list):
            return [string(x) for x in item]
        if isinstance(item, str):
            return item.encode()
        if isinstance(item, dict) and not _is_object(item):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except ValueError as error:
                raise ServingError("INVALID_ARGUMENT", "Unable to base64 decode") from error
        raise ServingError("INVALID_ARGUMENT",
                           f"JSON Value: {json.dumps(item)} not formatted correctly for string")
    try:
        if dtype != tf.string:
            return np.array(value, dtype=dtype.as_numpy_dtype)
        array = np.array(string(value), dtype=object)
        if any(isinstance(x, list) for x in array.flat):
            raise ValueError("lists of different lengths")
        return array
    except (TypeError, ValueError) as error:
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(value)} is not a dense "
                           f"{dtype.name} tensor: {error}") from error


def _inputs_from_json(doc: dict, dtypes: dict[str, tf.DType]) -> tuple[bool, dict]:
    """json_tensor.cc FillPredictRequestFromJson: (row format, input tensors)."""
    if "instances" in doc and "inputs" in doc:
        raise ServingError("INVALID_ARGUMENT", "Not formatted correctly expecting only one of "
                           "'inputs' or 'instances' keys to exist ")
    only = next(iter(dtypes)) if len(dtypes) == 1 else None
    if "instances" in doc:
        items = doc["instances"]
        if not isinstance(items, list) or not items:
            raise ServingError("INVALID_ARGUMENT",
                               "Expecting 'instances' to be a non-empty list/array")
        if _is_object(items[0]):
            for index, item in enumerate(items):
                if not _is_object(item) or set(item) != set(dtypes):
                    raise ServingError("INVALID_ARGUMENT", f"Failed to process element: {index} of "
                                       f"'instances' list. JSON object: {json.dumps(item)} keys "
                                       f"must be equal to: {_join(dtypes)}")
            columns = {name: [item[name] for item in items] for name in dtypes}
        elif only is None:
            raise ServingError("INVALID_ARGUMENT", "instances is a plain list, but expecting list "
                               "of objects as multiple input tensors required as per "
                               "tensorinfo_map")
        else:
            columns = {only: items}
        return True, {name: _array(columns[name], dtypes[name]) for name in dtypes}
    if "inputs" not in doc:
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
    value = doc["inputs"]
    if not _is_object(value):
        if only is None:
            raise ServingError("INVALID_ARGUMENT", "inputs is a plain value/list, but expecting an "
                               "object as multiple input tensors required as per tensorinfo_map")
        value = {only: value}
    for name in dtypes:
        if name not in value:
            raise ServingError("INVALID_ARGUMENT",
                               f"Missing named input: {name} in 'inputs' object.")
    return False, {name: _array(value[name], dtypes[name]) for name in dtypes}


def _json_value(array: np.ndarray, name: str) -> object:
    """A tensor as JSON: float32 as its shortest decimal, bytes as {"b64"} for *_bytes outputs."""
    if array.dtype == np.float32:  # json_tensor.cc WriteDecimal: no float->double noise digits
        array = np.array([float(str(x)) for x in array.ravel()]).reshape(array.shape)
    elif array.dtype == object:
        array = np.array([{"b64": base64.b64encode(x).decode()} if name.endswith("_bytes")
                          else x.decode(errors="replace") for x in array.ravel()],
                         dtype=object).reshape(array.shape)
    return array.tolist()


def _outputs_to_json(outputs: dict[str, np.ndarray], row: bool) -> str:
    """json_tensor.cc MakeRowFormatJsonFromTensors / MakeColumnarFormatJsonFromTensors."""
    if not row:
        columns = {name: _json_value(array, name) for name, array in outputs.items()}
        result = columns if len(columns) > 1 else next(iter(columns.values()))
        return json.dumps({"outputs": result}, indent=4)
    batch = None
    for name, array in outputs.items():
        if array.ndim == 0:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {name} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {name} has inconsistent batch "
                               f"size: {array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    # array[i, ...] keeps a 0-d array, where array[i] would give a bare bytes or float32.
    rows = [{name: _json_value(array[i, ...], name) for name, array in outputs.items()}
            for i in range(batch)]
    if len(outputs) == 1:
        rows = [next(iter(item.values())) for item in rows]
    return json.dumps({"predictions": rows}, indent=4)


def _rest_predict(core: Core, spec: tuple[str, int | None, str | None], body: bytes) -> str:
    """HttpRestApiHandler::ProcessPredictRequest."""
    if not body:
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except ValueError as error:
        raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {getattr(error, 'msg', error)} "
                           f"at offset: {getattr(error, 'pos', 0)}") from error
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(doc)} Is not object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise ServingError("INVALID_ARGUMENT", "'signature_name' key must be a string value.")
    _, servable = core.handle(*spec)
    signature = servable.signature_defs.get(signature_name or _DEFAULT_SIGNATURE)
    if signature is None:
        raise ServingError("INVALID_ARGUMENT", f'Serving signature name: '
                           f'"{signature_name or _DEFAULT_SIGNATURE}" not found in signature def')
    dtypes = {name: tf.dtypes.as_dtype(info.dtype) for name, info in signature.inputs.items()}
    row, inputs = _inputs_from_json(doc, dtypes)
    _, outputs = core.predict(spec[0], servable, signature_name, inputs, [])
    return _outputs_to_json(outputs, row)


def rest(core: Core, method: str, path: str, body: bytes) -> tuple[str, str, str, str]:
    """HttpRestApiHandler::ProcessRequest: (status code, JSON, model name, API) of a /v1/ path."""
    predict = _PREDICT_PATH.fullmatch(path) if method == "POST" else None
    status = _STATUS_PATH.fullmatch(path) if method == "GET" else None
    match = predict or status
    name = urllib.parse.unquote(match.group(1) or "") if match else ""
    api = predict.group(4) if predict else ""
    try:
        if match is None or api not in ("", "classify", "regress", "predict"):
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        version = int(match.group(2)) if match.group(2) else None
        if version is not None and version >= 2**63:
            raise ServingError("INVALID_ARGUMENT",
                               f"Failed to convert version: {match.group(2)} to numeric.")
        label = urllib.parse.unquote(match.group(3)) if match.group(3) else None
        if api in ("classify", "regress"):
            raise ServingError("UNIMPLEMENTED", f"{_PREFIX}: the TF Serving stand-in has no {api}")
        if predict:
            return "OK", _rest_predict(core, (name, version, label), body), name, api
        if not name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        if status.group(4) == "metadata":
            response = core.metadata(name, version, label)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            output = {"model_spec": _as_dict(response.model_spec),
                      "metadata": {"signature_def": _as_dict(signatures)}}
            return "OK", json.dumps(output, indent=4), name, api
        # GetModelStatus ignores a version label: /labels/<label> lists every version.
        return "OK", json_format.MessageToJson(core.status(name, version),
                                               including_default_value_fields=True), name, api
    except ServingError as error:
        return error.code, json.dumps({"error": error.message}, indent=4), name, api


def _as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


class RestHandler(BaseHTTPRequestHandler):
    """The REST port: the Prometheus path, then TF Serving's /v1/ dispatcher, else 404."""

    protocol_version = "HTTP/1.1"
    server_version = _PREFIX

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        path = urllib.parse.urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path == server.metrics_path:
            self._reply(200, "text/plain", server.core.metrics.page())
        elif re.fullmatch(r"(?i)/v1/.*", path):
            start = time.monotonic()
            code, output, name, api = rest(server.core, self.command, path, body)
            if code == "OK":
                server.core.metrics.add(":tensorflow:serving:request_latency",
                                        (time.monotonic() - start) * 1e6,
                                        model_name=name, API=api, entrypoint="REST")
            server.core.metrics.add(":tensorflow:serving:request_count", 1,
                                    model_name=name, status=code)
            self._reply(_HTTP_STATUS.get(code, 500), "application/json", output)
        else:
            self.send_error(404)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _reply(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - TF Serving logs no requests
        pass


# --- gRPC -----------------------------------------------------------------------------------------

def _tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Tensor::AsProtoField, as TF Serving fills PredictResponse: typed *_val fields."""
    fields = {np.float32: "float_val", np.float64: "double_val", np.int64: "int64_val",
              np.int32: "int_val", np.int16: "int_val", np.int8: "int_val", np.uint8: "int_val",
              np.uint16: "int_val", np.uint32: "uint32_val", np.uint64: "uint64_val",
              np.bool_: "bool_val", np.object_: "string_val"}
    if array.dtype.type not in fields:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=tf.as_dtype(array.dtype).as_datatype_enum,
                                   tensor_shape=tf.TensorShape(array.shape).as_proto())
    getattr(proto, fields[array.dtype.type]).extend(array.ravel().tolist())
    return proto


def _version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    return (spec.version.value if choice == "version" else None,
            spec.version_label if choice == "version_label" else None)


def _grpc_call(core: Core, context, api: str | None, model_name: str, call):
    """Runs call, recording request metrics as prediction_service_impl.cc does for api."""
    start = time.monotonic()
    try:
        response = call()
    except ServingError as error:
        if api:
            core.metrics.add(":tensorflow:serving:request_count", 1, model_name=model_name,
                             status=error.code)
        message = error.message if len(error.message) <= 1024 else (
            error.message[:1024] + "...TRUNCATED")  # grpc_status_util.cc
        context.abort(grpc.StatusCode[error.code], message)
    if api:
        core.metrics.add(":tensorflow:serving:request_latency", (time.monotonic() - start) * 1e6,
                         model_name=model_name, API=api, entrypoint="GRPC")
        core.metrics.add(":tensorflow:serving:request_count", 1, model_name=model_name,
                         status="OK")
    return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata; the rest fail."""

    def __init__(self, core: Core):
        self._core = core

    def Predict(self, request, context):  # noqa: N802 - gRPC method names
        return _grpc_call(self._core, context, "Predict", request.model_spec.name,
                          lambda: self._predict(request))

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        number, servable = self._core.handle(spec.name, *_version_choice(spec))
        inputs = {}
        for alias, proto in request.inputs.items():
            try:
                inputs[alias] = tf.make_ndarray(proto)
            except Exception as error:  # any malformed TensorProto
                raise ServingError("INVALID_ARGUMENT", f"tensor parsing error: {alias}") from error
        key, outputs = self._core.predict(spec.name, servable, spec.signature_name, inputs,
                                          list(request.output_filter))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.signature_name = key
        response.model_spec.version.value = number
        for alias, array in outputs.items():
            response.outputs[alias].CopyFrom(_tensor_proto(array))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        def metadata():
            if not request.HasField("model_spec"):
                raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
            if not request.metadata_field:
                raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at "
                                   "least one metadata_field")
            for name in request.metadata_field:
                if name != "signature_def":
                    raise ServingError("INVALID_ARGUMENT",
                                       f"Metadata field {name} is not supported")
            spec = request.model_spec
            return self._core.metadata(spec.name, *_version_choice(spec))
        return _grpc_call(self._core, context, None, request.model_spec.name, metadata)

    def _unimplemented(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      f"{_PREFIX}: the TF Serving stand-in implements Predict and GetModelMetadata")

    Classify = Regress = MultiInference = _unimplemented  # noqa: N815


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus (config reloads are not reproduced)."""

    def __init__(self, core: Core):
        self._core = core

    def GetModelStatus(self, request, context):  # noqa: N802
        def status():
            if not request.HasField("model_spec"):
                raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
            spec = request.model_spec
            return self._core.status(spec.name,
                                     spec.version.value if spec.HasField("version") else None)
        return _grpc_call(self._core, context, None, request.model_spec.name, status)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      f"{_PREFIX}: the TF Serving stand-in does not reload its config")


# --- start-up -------------------------------------------------------------------------------------

def start(options: dict, stop: threading.Event) -> list[Callable[[], object]]:
    """Server::BuildAndStart: checks, loads, then listens on gRPC, then REST.

    Returns a function that closes each server. Keep them: they hold the gRPC server, which
    stops when it is garbage-collected.
    """
    if options["port"] == 0 and not options["grpc_socket_path"]:
        raise ServingError("INVALID_ARGUMENT", "At least one of server_options.grpc_port or "
                           "server_options.grpc_socket_path must be set.")
    if not options["model_base_path"] and not options["model_config_file"]:
        raise ServingError("INVALID_ARGUMENT", "Both server_options.model_base_path and "
                           "server_options.model_config_file are empty!")
    models = load_config(options)
    if options["batching_parameters_file"] and not options["enable_batching"]:
        raise ServingError("INVALID_ARGUMENT", "server_options.batching_parameters_file is set "
                           "without setting server_options.enable_batching to true.")
    core = Core(models, options, stop)
    threading.Thread(target=core.poll_forever, name="fs_poll", daemon=True).start()
    core.wait_until_available()
    if stop.is_set():
        return []
    host = os.environ.get("TF_SERVING_STANDIN_HOST", "0.0.0.0")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max(options["grpc_max_threads"], 1)),
        # No SO_REUSEPORT: a second server on a taken port must fail, not share it.
        options=[("grpc.max_receive_message_length", _MAX_MESSAGE),
                 ("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.so_reuseport", 0)])
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core), server)
    if options["enable_grpc_healthcheck_service"]:
        # gRPC's default health service as server.cc sets it: "" and these two names SERVING.
        health_service = health.HealthServicer()
        for name in ("ModelService", "PredictionService"):
            health_service.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    addresses = [f"{host}:{options['port']}"] if options["port"] else []
    addresses += [f"unix:{options['grpc_socket_path']}"] if options["grpc_socket_path"] else []
    for address in addresses:
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise ServingError("INVALID_ARGUMENT", "Failed to BuildAndStart gRPC server")
    server.start()
    stoppers = [functools.partial(server.stop, None)]
    _log(f"Running gRPC ModelServer at {', '.join(addresses)} ...")
    rest_port = options["rest_api_port"]
    if not rest_port:
        return stoppers
    if rest_port == options["port"]:
        _log("server_options.http_port cannot be same as grpc_port. Please use a different port "
             "for HTTP/REST API. Skipped exporting HTTP/REST API.")
        return stoppers
    metrics_path = (monitoring_config(options["monitoring_config_file"])
                    if options["monitoring_config_file"] else None)
    try:
        http = ThreadingHTTPServer((host, rest_port), RestHandler)
    except OSError as error:  # server.cc logs this and carries on with gRPC only
        _log(f"Failed to start HTTP Server at localhost:{rest_port}: {error}")
        return stoppers
    http.daemon_threads = True
    http.core, http.metrics_path = core, metrics_path
    threading.Thread(target=http.serve_forever, name="rest", daemon=True).start()
    _log(f"Exporting HTTP/REST API at:localhost:{rest_port} ...")
    return [*stoppers, http.server_close]


def main(argv: list[str]) -> int:
    options, given, unknown, valid = parse_flags(argv[1:])
    usage = _usage(argv[0])
    if not valid:
        print(usage, end="")
        return 255  # main.cc returns -1
    if options["version"]:
        print(f"TensorFlow ModelServer: 2.16.1 (the {_PREFIX} stand-in, not the real server)\n"
              f"TensorFlow Library: {tf.__version__}")
        return 0
    if unknown:  # main.cc prints this and the usage, then starts all the same
        print(f"unknown argument: {unknown[0]}\n{usage}", end="", flush=True)
        _log(f"ignoring {' '.join(unknown)}, as tensorflow_model_server 2.16.1 does")
    for name in sorted(given & _UNHONOURED.keys()):
        behaves_as, why = _UNHONOURED[name]
        if behaves_as is None or options[name] != behaves_as:
            _log(f"cannot honour --{name}={_text(options[name])} ({why}); ignored")
    try:
        stoppers = start(options, _STOP)
    except ServingError as error:
        print(f"Failed to start server. Error: {error}", flush=True)
        return 255
    _STOP.wait()
    _log("stopping on a signal")
    for stop_server in stoppers:
        stop_server()
    return 0


if __name__ == "__main__":
    exit_code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # At once: gRPC's workers and a version still loading are not waited for.
    os._exit(exit_code)
