#!/usr/bin/env bash
# The `offline` skaffold profile's deploy hook (skaffold.yaml): runs the whole pipeline once,
# on the embedded runner (`tfxkfp run`: LocalDagRunner, SQLite ML Metadata, Beam's
# DirectRunner), as a Job in the image skaffold just built, instead of submitting it to KFP.
# For clusters without a working KFP: CI's local cluster, where KFP's images cannot be pulled.
#
# The Job mounts the store claim tfx-store at /tfx like every KFP step, trains untuned on
# /tfx/data/social_network_ads/data.csv (`tfxkfp data stage` writes it) and writes its output
# under /tfx, so the Pusher's versions land in /tfx/serving/social_network_ads, the directory
# the tf-serving release serves. The pod's log is streamed here; on failure the Job, its pod
# and the namespace's events are printed, and the exit status is 1.
#
#   k8s/local/run-in-cluster.sh [IMAGE]   (default: the reference in build/pipeline-image.txt)
set -euo pipefail
cd "$(dirname "$0")/../.."

NAMESPACE=kubeflow
# Bounded waits, in seconds: for the pod to start (its image is pulled from the cluster's
# registry), and for the run itself (about two minutes untuned on the real data, 2 cores).
START_SECONDS=300
RUN_SECONDS=1200

image=${1:-$(cat build/pipeline-image.txt)}
# One Job per run: the dev loop starts one per rebuild, and each keeps its image and log.
name=pipeline-run-$(date +%Y%m%d-%H%M%S)

kubectl apply -f - <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: $name
  namespace: $NAMESPACE
  labels:
    app.kubernetes.io/name: pipeline-run
    app.kubernetes.io/part-of: tfx-kfp-gke
spec:
  backoffLimit: 0
  activeDeadlineSeconds: $RUN_SECONDS
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels:
        app.kubernetes.io/name: pipeline-run
        app.kubernetes.io/part-of: tfx-kfp-gke
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: pipeline
          image: $image
          command: [tfxkfp, run, --no-tune, --output, /tfx,
                    --data, /tfx/data/social_network_ads/data.csv]
          resources:
            requests: {cpu: "1", memory: 2Gi}
            limits: {cpu: "2", memory: 4Gi}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: store, mountPath: /tfx}
      volumes:
        - name: store
          persistentVolumeClaim: {claimName: tfx-store}
EOF

report() {
  echo "run-in-cluster: job/$name did not succeed: $1" >&2
  kubectl -n "$NAMESPACE" describe "job/$name" >&2 || true
  kubectl -n "$NAMESPACE" describe pods -l "job-name=$name" >&2 || true
  kubectl -n "$NAMESPACE" logs -l "job-name=$name" --tail 60 >&2 || true
  kubectl -n "$NAMESPACE" get events --sort-by=.lastTimestamp | tail -n 30 >&2 || true
  exit 1
}

# The container has a log once it runs (or has already ended); until then, the image pull.
deadline=$((SECONDS + START_SECONDS))
until kubectl -n "$NAMESPACE" get pods -l "job-name=$name" \
        -o jsonpath='{.items[*].status.containerStatuses[*].state}' | grep -qE 'running|terminated'; do
  ((SECONDS < deadline)) || report "its container did not start within ${START_SECONDS}s"
  sleep 1
done
# Follows the log to the container's exit.
kubectl -n "$NAMESPACE" logs -f "job/$name" || report "its log could not be read"
# The Job controller records the outcome shortly after the container exits.
deadline=$((SECONDS + 60))
until conditions=$(kubectl -n "$NAMESPACE" get "job/$name" \
        -o jsonpath='{.status.conditions[?(@.status=="True")].type}') \
      && grep -qwE 'Complete|Failed' <<<"$conditions"; do
  ((SECONDS < deadline)) || report "no outcome recorded 60 s after its pod's log ended"
  sleep 1
done
grep -qw Complete <<<"$conditions" || report "$conditions"
echo "run-in-cluster: job/$name succeeded with $image"
