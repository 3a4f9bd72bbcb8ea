# Setup, run and test the tfx-kfp-gke pipeline. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
OUTPUT ?= output
TARGET ?= kfp
SPEC ?= build/pipeline-$(TARGET).$(if $(filter vertex,$(TARGET)),json,yaml)
PIP_VERSION = 25.3
BIN = $(VENV)/bin
# tfx 1.16 declares Python <3.11 although its libraries ship 3.11 wheels (DESIGN.md, Versions).
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check --ignore-requires-python

# The cluster paths (README, "Run it on Kubernetes"): kind or minikube for the dev loop, GKE.
KIND_CLUSTER = tfx-kfp-gke
KIND_STORE = .kind/tfx
# The local cluster (k8s/local): single-node Kubernetes as host processes, the one CI uses.
LOCAL_CLUSTER = k8s/local/cluster.sh
# The skaffold profiles of `make dev-local`: `local` alone where the monitoring chart's
# dependencies can be had (skaffold.yaml says what `offline` changes).
LOCAL_PROFILES ?= local,offline
# The tools cluster-up built (helm, skaffold, kubectl) first on PATH, and the local cluster's
# KUBECONFIG: the environment of every command run against the local cluster.
LOCAL_TOOLS = PATH="$$(k8s/local/build-binaries.sh --dirs | tr '\n' :)$$PATH" \
	KUBECONFIG=$$($(LOCAL_CLUSTER) kubeconfig)
# Settings `make dev-submit` compiles and submits with (TFXKFP_* KEY=value lines).
PIPELINE_ENV ?= k8s/kind/pipeline.env
# The dev loop trains untuned: a run per code change should take minutes, not an hour.
DEV_COMPILE_FLAGS ?= --no-tune

.PHONY: help setup run lint test test-fast test-cluster compile submit constraints clean \
	cluster-up cluster-down chart-deps cluster-kfp cluster-submit kind-up kind-down minikube-up \
	minikube-down gke-apply dev dev-submit dev-local

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(BIN)/.installed  ## create .venv, install the pinned TFX 1.16 stack and this package

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) pip==$(PIP_VERSION)
	$(PIP_INSTALL) --constraint constraints.txt --editable '.[test,bench,lint]'
	touch $@

run: setup  ## run the whole pipeline locally on synthetic data (DATA=path.csv for your own)
	$(BIN)/tfxkfp run --output $(OUTPUT) $(if $(DATA),--data $(DATA))

test: setup  ## run the offline test suite, end-to-end pipeline runs included
	@# promtool unit-tests the alert rules; its first build takes minutes, so say so up front.
	k8s/local/build-binaries.sh --promtool >/dev/null
	$(BIN)/python -m pytest -m 'not cluster and not kind'

lint: setup  ## static checks: ruff (rules in pyproject.toml) over the Python code
	$(BIN)/ruff check pipeline tests benchmarks docker

test-fast: setup  ## the offline test suite without end-to-end pipeline runs
	$(BIN)/python -m pytest -m 'not e2e and not cluster and not kind'

test-cluster: setup  ## start the local cluster if it is down, run the cluster tier on it, leave it up
	$(LOCAL_CLUSTER) up >/dev/null
	KUBECONFIG=$$($(LOCAL_CLUSTER) kubeconfig) $(BIN)/python -m pytest -m cluster tests/cluster

compile: setup  ## compile for KFP (TARGET=vertex for Vertex AI); settings from TFXKFP_* variables
	$(BIN)/tfxkfp compile --target $(TARGET) --output $(SPEC)

submit: compile  ## compile, then start a run on KFP at TFXKFP_KFP_HOST and follow it
	$(BIN)/tfxkfp submit $(SPEC) --target $(TARGET) --wait

constraints:  ## re-resolve the dependency pins from scratch into constraints.txt
	rm -rf /tmp/tfxkfp-constraints && $(PYTHON) -m venv /tmp/tfxkfp-constraints
	/tmp/tfxkfp-constraints/bin/python -m pip install --quiet --ignore-requires-python \
	  'apache-beam==2.59.0' 'protobuf<5' 'numpy<2' '.[test,bench,lint]'
	{ sed -n '1,3p' constraints.txt; /tmp/tfxkfp-constraints/bin/python -m pip freeze \
	  --exclude-editable | grep -v -E '^(tfx-kfp-gke|pip|setuptools|wheel)[= @]'; } > constraints.new
	mv constraints.new constraints.txt

cluster-up:  ## start the local cluster: Kubernetes from source on this machine (root; prints KUBECONFIG)
	$(LOCAL_CLUSTER) up

cluster-down:  ## stop the local cluster and remove everything it made
	$(LOCAL_CLUSTER) down

chart-deps:  ## helm/kfp's dependency chart (Argo Workflows) into helm/kfp/charts, as `helm dependency build`
	$(LOCAL_TOOLS) k8s/local/upstream.sh charts >/dev/null

cluster-kfp: chart-deps  ## install KFP and TF Serving on the local cluster with the helm CLI, then `helm test kfp`
	$(LOCAL_TOOLS) helm upgrade --install kfp helm/kfp -n kubeflow -f helm/kfp/ci/local-values.yaml \
	  --set argo-workflows.enabled=true --wait --timeout 15m
	$(LOCAL_TOOLS) helm upgrade --install tf-serving helm/tf-serving -n tfx-serving \
	  -f helm/tf-serving/ci/local-values.yaml
	$(LOCAL_TOOLS) helm test kfp -n kubeflow --timeout 5m

cluster-submit: setup  ## run the pipeline on the local cluster's KFP (DATA=csv), wait, check what TF Serving serves
	$(LOCAL_TOOLS) k8s/local/submit.sh $(DATA)

kind-up:  ## create the kind cluster with its model store, namespaces and volumes
	mkdir -p $(KIND_STORE)/data/social_network_ads $(KIND_STORE)/serving/social_network_ads
	@# Steps and TF Serving run as other uids than yours; skip what a step already created.
	for dir in $(KIND_STORE) $(KIND_STORE)/data $(KIND_STORE)/data/social_network_ads \
	    $(KIND_STORE)/serving $(KIND_STORE)/serving/social_network_ads; do \
	  if [ -O "$$dir" ]; then chmod a+rwx "$$dir"; fi; done
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --config k8s/kind/cluster.yaml
	kubectl --context kind-$(KIND_CLUSTER) apply -k k8s/overlays/kind

kind-down:  ## delete the kind cluster (the store in .kind/ stays)
	kind delete cluster --name $(KIND_CLUSTER)

minikube-up:  ## start the minikube profile with its model store, namespaces and volumes
	k8s/minikube/profile.sh up
	kubectl --context tfx-kfp-gke apply -k k8s/overlays/minikube

minikube-down:  ## delete the minikube profile (the store in .minikube/ stays)
	k8s/minikube/profile.sh down

gke-apply:  ## namespaces and the InfraValidator's service account on the current GKE context
	@! grep -q PROJECT_ID k8s/overlays/gke/params.env || \
	  { echo "error: set your project in k8s/overlays/gke/params.env" >&2; exit 2; }
	kubectl apply -k k8s/overlays/gke

dev:  ## skaffold dev on kind: rebuild, redeploy and start a pipeline run on every change
	skaffold dev -p kind

dev-local: chart-deps  ## skaffold dev on the local cluster, with the skaffold and helm that cluster-up built
	$(LOCAL_TOOLS) skaffold dev -p $(LOCAL_PROFILES)

dev-submit: setup  ## compile with the image skaffold just built and start a run (skaffold's hook)
	@if [ -n "$$TFXKFP_SKIP_SUBMIT" ]; then echo "TFXKFP_SKIP_SUBMIT is set: no run"; exit 0; fi; \
	! grep -qE '(BUCKET|PROJECT_ID)' $(PIPELINE_ENV) || \
	  { echo "error: $(PIPELINE_ENV): replace the BUCKET/PROJECT_ID placeholders" >&2; exit 2; }; \
	set -a; . ./$(PIPELINE_ENV); set +a; \
	image=$$(cat build/pipeline-image.txt) || exit 2; \
	for attempt in $$(seq 60); do \
	  curl -fsS -o /dev/null "$$TFXKFP_KFP_HOST/apis/v2beta1/healthz" && break; sleep 5; done; \
	$(BIN)/tfxkfp compile --target kfp --image "$$image" $(DEV_COMPILE_FLAGS) \
	  --output build/pipeline-dev.yaml && \
	$(BIN)/tfxkfp submit build/pipeline-dev.yaml --run-name "skaffold $$image"

clean:  ## remove the virtualenv and local run output
	rm -rf $(VENV) $(OUTPUT)
