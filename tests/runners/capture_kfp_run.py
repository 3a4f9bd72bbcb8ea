"""Records a run on a real KFP as a test fixture: ``python tests/runners/capture_kfp_run.py
RUN_ID OUT.json`` with TFXKFP_KFP_HOST and TFXKFP_METADATA_GRPC set (k8s/local/pipeline.env).

It keeps exactly what ``pipeline.runners.kubeflow.run_report`` reads: the API server's answer
to GET /apis/v2beta1/runs/RUN_ID (as the server sent it, without the pipeline spec it
echoes), and the run's ML Metadata (its context, executions, events, artifacts and their
types) in ml-metadata's own JSON form. test_kubeflow_run_report.py serves both back, the
first through the fake KFP API server, the second from a real ML Metadata store.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


def _messages(messages) -> list[dict]:
    return [json_format.MessageToDict(message) for message in messages]


def capture(host: str, metadata: str, run_id: str) -> dict:
    with urllib.request.urlopen(f"{host}/apis/v2beta1/runs/{run_id}", timeout=30) as response:
        run = json.load(response)
    run.pop("pipeline_spec", None)
    address, _, port = metadata.rpartition(":")
    store = metadata_store.MetadataStore(
        metadata_store_pb2.MetadataStoreClientConfig(host=address, port=int(port)))
    context = store.get_context_by_type_and_name("system.PipelineRun", run_id)
    executions = store.get_executions_by_context(context.id)
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = store.get_artifacts_by_id({e.artifact_id for e in events})
    return {
        "run": run,
        "metadata": {
            "context_type": json_format.MessageToDict(store.get_context_types_by_id(
                [context.type_id])[0]),
            "context": json_format.MessageToDict(context),
            "execution_types": _messages(store.get_execution_types_by_id(
                {e.type_id for e in executions})),
            "artifact_types": _messages(store.get_artifact_types_by_id(
                {a.type_id for a in artifacts})),
            "executions": _messages(executions),
            "artifacts": _messages(artifacts),
            "events": _messages(events),
        },
    }


if __name__ == "__main__":
    run_id, output = sys.argv[1:3]
    captured = capture(os.environ["TFXKFP_KFP_HOST"], os.environ["TFXKFP_METADATA_GRPC"], run_id)
    with open(output, "w") as file:
        json.dump(captured, file, indent=1, sort_keys=True)
        file.write("\n")
