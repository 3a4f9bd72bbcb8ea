#!/usr/bin/env bash
# `make cluster-submit [DATA=file.csv]`: one run of the pipeline on the local cluster's Kubeflow
# Pipelines (`make cluster-kfp` installed it), as a user starts one, then the proof that it
# landed. Exits non-zero unless all of it holds:
#
#   1. the data (DATA, or synthetic rows) is staged where the steps read it;
#   2. the pipeline is compiled for kfp with the pipeline image cluster-up built
#      (build/local-images.env) and the settings of k8s/local/pipeline.env;
#   3. it is submitted to the local API server and followed until it ends: it must Succeed;
#   4. the run is shown from KFP and ML Metadata (`tfxkfp runs show`), also when it failed;
#   5. every task Succeeded or came from KFP's cache, the Pusher published a version newer
#      than any before the run, and the tf-serving release serves it through its Service:
#      REST and gRPC predictions equal the pushed SavedModel's, run in this process
#      (`tfxkfp serving check`).
#
# Extra compile flags come from COMPILE_FLAGS (e.g. "--no-tune").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tfxkfp=$repo/.venv/bin/tfxkfp
data=${1:-}
# The node's store, which the steps see through the tfx-store claim at TFXKFP_VOLUME_MOUNT_PATH.
store=/var/local/tfx

say() { printf 'cluster-submit: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

set -a
# shellcheck source=k8s/local/pipeline.env
. "$here/pipeline.env"
set +a
image=$(sed -n 's/^PIPELINE_IMAGE=//p' "$repo/build/local-images.env" 2>/dev/null) || true
[ -n "$image" ] || die "no PIPELINE_IMAGE in build/local-images.env: run make cluster-up first"
# A path the steps read, as the node sees it.
on_node() { echo "$store/${1#"$TFXKFP_VOLUME_MOUNT_PATH"/}"; }

mkdir -p "$repo/build/cluster-submit"
if [ -z "$data" ]; then
  data=$repo/build/cluster-submit/synthetic.csv
  "$tfxkfp" data synth --out "$data" >&2
fi
"$tfxkfp" data stage "$data" --out "$(on_node "$TFXKFP_DATA_ROOT")" >&2

spec=$repo/build/cluster-submit/pipeline.yaml
# shellcheck disable=SC2086  # COMPILE_FLAGS is a list of flags
"$tfxkfp" compile --target kfp --image "$image" --output "$spec" ${COMPILE_FLAGS:-} >&2
say "compiled $spec with $image"

serving_dir=$(on_node "$TFXKFP_SERVING_DIR")
newest_version() {
  "$repo/.venv/bin/python" -c 'import sys; from pipeline import model_versions
versions = model_versions.served_versions(sys.argv[1]); print(versions[-1] if versions else 0)' "$1"
}
before=$(newest_version "$serving_dir")
status=0
url=$("$tfxkfp" submit "$spec" --wait --run-name "cluster-submit $(date -u +%FT%TZ)") || status=$?
run_id=${url##*/}
[ -n "$run_id" ] || die "no run was created (tfxkfp submit exited $status)"
summary=$repo/build/cluster-submit/run-$run_id.json
"$tfxkfp" runs show "$run_id" || status=1
"$tfxkfp" runs show "$run_id" --output json >"$summary" || status=1
[ "$status" = 0 ] || die "run $run_id did not succeed: $url"

# Every task ran to success or was taken from KFP's cache, and the Pusher published a new version.
version=$("$repo/.venv/bin/python" - "$summary" "$before" <<'PYTHON'
import json, sys
run = json.load(open(sys.argv[1]))
unfinished = [f"{t['display_name']} {t['state']}" for t in run["tasks"]
              if t["state"] not in ("SUCCEEDED", "CACHED")]
if unfinished:
    sys.exit(f"tasks that did not succeed: {', '.join(unfinished)}")
pushed = (run["pushed"] or {}).get("version")
if pushed is None or pushed <= int(sys.argv[2]):
    sys.exit(f"no version newer than {sys.argv[2]} was pushed (pushed: {pushed})")
print(pushed)
PYTHON
) || die "run $run_id: see $summary"
"$tfxkfp" serving check "$serving_dir" --version "$version" >&2
say "run $run_id succeeded; TF Serving serves its version $version: $url"
