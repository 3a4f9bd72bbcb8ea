{{/*
Chart name, overridable; truncated to the 63 characters a label value allows.
*/}}
{{- define "monitoring.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name: <release>-<name>, or the release name when it already contains the name.
*/}}
{{- define "monitoring.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: <name>-<version> ("+" is not allowed in label values).
*/}}
{{- define "monitoring.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable across upgrades, so never the version.
*/}}
{{- define "monitoring.selectorLabels" -}}
app.kubernetes.io/name: {{ include "monitoring.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels on every object.
*/}}
{{- define "monitoring.labels" -}}
helm.sh/chart: {{ include "monitoring.chart" . }}
{{ include "monitoring.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tfx-kfp-gke
{{- end }}

{{/*
Labels the Prometheus operator's selectors match (ServiceMonitor, PodMonitor, PrometheusRule):
prometheusOperator.selectorLabels, or `release: <release>` as kube-prometheus-stack selects.
*/}}
{{- define "monitoring.operatorSelectorLabels" -}}
{{- if .Values.prometheusOperator.selectorLabels }}
{{- toYaml .Values.prometheusOperator.selectorLabels }}
{{- else }}
{{- printf "release: %s" (.Release.Name | quote) }}
{{- end }}
{{- end }}

{{/*
Scrape job of TF Serving: the PodMonitoring's name on GKE (managed collection names the job
after it) and the job label the ServiceMonitor writes, so the alerts select the same series
with either backend.
*/}}
{{- define "monitoring.servingJob" -}}
{{- printf "%s-tf-serving" (include "monitoring.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{/*
Scrape job of the Kubeflow Pipelines API server (same rule as monitoring.servingJob).
*/}}
{{- define "monitoring.kfpJob" -}}
{{- printf "%s-kfp-api-server" (include "monitoring.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{/*
PromQL label matchers of TF Serving's series: its namespace and scrape job.
*/}}
{{- define "monitoring.servingMatchers" -}}
{{- printf "namespace=%q, job=%q" .Values.serving.namespace (include "monitoring.servingJob" .) }}
{{- end }}

{{/*
Image reference from {repository, tag, digest}: repository:tag, plus @digest when pinned.
*/}}
{{- define "monitoring.image" -}}
{{- if .digest }}
{{- printf "%s:%s@%s" .repository .tag .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/*
Prometheus HTTP API the helm test asks: tests.prometheusUrl, or the Service the bundled
kube-prometheus-stack creates (<its fullname, 26 characters at most>-prometheus:9090).
*/}}
{{- define "monitoring.prometheusUrl" -}}
{{- if .Values.tests.prometheusUrl }}
{{- .Values.tests.prometheusUrl | trimSuffix "/" }}
{{- else }}
{{- $stack := index .Values "kube-prometheus-stack" }}
{{- $name := "" }}
{{- if $stack.fullnameOverride }}
{{- $name = $stack.fullnameOverride }}
{{- else if contains "kube-prometheus-stack" .Release.Name }}
{{- $name = .Release.Name }}
{{- else }}
{{- $name = printf "%s-kube-prometheus-stack" .Release.Name }}
{{- end }}
{{- printf "http://%s-prometheus.%s.svc:9090" ($name | trunc 26 | trimSuffix "-") .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
The TF Serving alerting rule groups, shared by PrometheusRule and the GKE Rules resource.
Metric names are TF Serving's (tensorflow_serving/servables/tensorflow/util.cc,
batching/batching_session.cc) and TensorFlow's SavedModel loader
(tensorflow/cc/saved_model/loader.cc) after TF Serving's Prometheus exporter turns every
character other than [a-zA-Z0-9_] into ":" (util/prometheus_exporter.cc). Latencies are
exported in microseconds, hence the division by 1e6. Prometheus template expressions in the
annotations are escaped from Helm with {{` ... `}}. GKE's Rules add the namespace label
themselves and reject rules that set it, so it is only added for the Prometheus operator.

What TF Serving 2.16.1 counts (model_servers/http_server.cc, prediction_service_impl.cc):
request_count counts every REST request under /v1/ (status and metadata GETs included, so
the readiness probe's) and every gRPC Predict/Classify/Regress, by status; request_latency
counts successful ones only, labelled with the API, which is "" for the REST GETs. So
successful model API calls are request_latency_count{API!=""}; a failed GET cannot be told
from a failed prediction, and counts as a failure.
*/}}
{{- define "monitoring.servingRuleGroups" -}}
{{- $sel := include "monitoring.servingMatchers" . }}
{{- $model := .Values.serving.modelName }}
{{- $window := .Values.rules.rateWindow }}
{{- $runbook := .Values.rules.runbookBaseUrl }}
{{- $r := .Values.rules }}
{{- $failed := printf ":tensorflow:serving:request_count{%s, model_name=%q, status!=\"OK\"}" $sel $model }}
{{- $succeeded := printf ":tensorflow:serving:request_latency_count{%s, model_name=%q, API!=\"\"}" $sel $model }}
{{- $latency := printf ":tensorflow:serving:request_latency_bucket{%s, model_name=%q, API!=\"\"}" $sel $model }}
{{- $versionPath := printf ".*/%s/[0-9]+/?" (regexQuoteMeta $model) }}
{{- $loadFailed := printf ":tensorflow:cc:saved_model:load_attempt_count{%s, status=\"fail\", model_path=~%q}" $sel $versionPath }}
{{- $loadWindow := $r.modelLoadFailure.window }}
{{- $queueing := printf ":tensorflow:serving:batching_session:queuing_latency_bucket{%s}" $sel }}
{{- $byModel := "sum by (namespace, model_name)" }}
- name: tf-serving
  interval: {{ $r.interval }}
  rules:
    - alert: TFServingHighErrorRatio
      # failed / (failed + successful model API calls); "or ... * 0" keeps the ratio defined
      # (1) when no call has ever succeeded.
      expr: |-
        (
          {{ $byModel }} (rate({{ $failed }}[{{ $window }}]))
        /
          (
            {{ $byModel }} (rate({{ $failed }}[{{ $window }}]))
          +
            (
              {{ $byModel }} (rate({{ $succeeded }}[{{ $window }}]))
            or
              {{ $byModel }} (rate({{ $failed }}[{{ $window }}])) * 0
            )
          )
        ) > {{ $r.errorRatio.threshold }}
      for: {{ $r.errorRatio.for }}
      labels:
        severity: {{ $r.errorRatio.severity }}
      annotations:
        summary: >-
          TF Serving answers too many requests for {{ $model }} with an error.
        description: >-
          {{`{{ $value | humanizePercentage }}`}} of the requests for model
          {{`{{ $labels.model_name }}`}} in {{`{{ $labels.namespace }}`}} failed over the last
          {{ $window }} (threshold {{ $r.errorRatio.threshold }}). Successful status and
          metadata GETs (readiness probes, helm test) are not counted; failed ones are, so while
          no version is AVAILABLE the readiness probe's 404s alone fire this alert.
        runbook_url: {{ printf "%s#tfservinghigherrorratio" $runbook }}
    - alert: TFServingHighP99Latency
      expr: |-
        histogram_quantile(0.99,
          sum by (namespace, model_name, le) (rate({{ $latency }}[{{ $window }}]))
        ) / 1e6 > {{ $r.p99Latency.thresholdSeconds }}
      for: {{ $r.p99Latency.for }}
      labels:
        severity: {{ $r.p99Latency.severity }}
      annotations:
        summary: >-
          TF Serving's p99 request latency for {{ $model }} is high.
        description: >-
          The 99th percentile of successful Predict/Classify/Regress latency (status GETs left
          out) for model {{`{{ $labels.model_name }}`}} in {{`{{ $labels.namespace }}`}} is
          {{`{{ $value | humanizeDuration }}`}} over the last {{ $window }} (threshold
          {{ $r.p99Latency.thresholdSeconds }}s).
        runbook_url: {{ printf "%s#tfservinghighp99latency" $runbook }}
    - alert: TFServingModelLoadFailed
      # A load failure is an event: the counter grows once per attempt (TF Serving retries
      # --max_num_load_retries times, a minute apart by default) and never goes down. The
      # alert holds for modelLoadFailure.window after the last failed attempt, then resolves.
      # The second half catches a series that appeared within the window already above zero
      # (one attempt, or failures before the first scrape), which increase() cannot see.
      expr: |-
        sum by (namespace, instance, model_path) (increase({{ $loadFailed }}[{{ $loadWindow }}])) > 0
        or
        sum by (namespace, instance, model_path) (
          {{ $loadFailed }}
          unless
          {{ $loadFailed }} offset {{ $loadWindow }}
        )
      labels:
        severity: {{ $r.modelLoadFailure.severity }}
      annotations:
        summary: >-
          TF Serving failed to load a version of {{ $model }}.
        description: >-
          {{`{{ $labels.instance }}`}} in {{`{{ $labels.namespace }}`}} failed to load the
          SavedModel {{`{{ $labels.model_path }}`}} within the last {{ $loadWindow }}; that
          version does not become AVAILABLE. A failure of the first version is not exported
          (the process exits first): TFServingPodNotReady covers it.
        runbook_url: {{ printf "%s#tfservingmodelloadfailed" $runbook }}
    - alert: TFServingHighBatchQueueingLatency
      expr: |-
        histogram_quantile(0.99,
          sum by (namespace, le) (rate({{ $queueing }}[{{ $window }}]))
        ) / 1e6 > {{ $r.batchQueueingLatency.thresholdSeconds }}
      for: {{ $r.batchQueueingLatency.for }}
      labels:
        severity: {{ $r.batchQueueingLatency.severity }}
      annotations:
        summary: >-
          Requests wait too long in TF Serving's batching queue.
        description: >-
          The 99th percentile of the time requests spend queued for a batch in
          {{`{{ $labels.namespace }}`}} is {{`{{ $value | humanizeDuration }}`}} over the last
          {{ $window }} (threshold {{ $r.batchQueueingLatency.thresholdSeconds }}s).
        runbook_url: {{ printf "%s#tfservinghighbatchqueueinglatency" $runbook }}
{{- if $r.podState.enabled }}
{{- $container := printf "namespace=%q, container=%q" .Values.serving.namespace .Values.serving.container }}
{{- $ready := printf "kube_pod_container_status_ready{%s}" $container }}
{{- $restarts := printf "kube_pod_container_status_restarts_total{%s}" $container }}
# The TF Serving pods' state as kube-state-metrics exports it (internal/store/pod.go); "max"
# folds duplicates when more than one kube-state-metrics is scraped. The chart's readiness
# probe GETs /v1/models/<model>/metadata, which answers 200 only while a version is AVAILABLE.
- name: tf-serving-pods
  interval: {{ $r.interval }}
  rules:
    - alert: TFServingNoAvailableModel
      expr: |-
        absent({{ $ready }} == 1)
      for: {{ $r.noAvailableModel.for }}
      labels:
        severity: {{ $r.noAvailableModel.severity }}
        model_name: {{ $model }}
        {{- if ne .Values.backend "gke-managed-prometheus" }}
        namespace: {{ .Values.serving.namespace }}
        {{- end }}
      annotations:
        summary: >-
          No TF Serving pod serves a version of {{ $model }}.
        description: >-
          No {{ .Values.serving.container }} container in {{ .Values.serving.namespace }} has
          been ready for {{ $r.noAvailableModel.for }}: none has a version of {{ $model }}
          AVAILABLE (its readiness probe), so the Service has no endpoint and predictions fail.
        runbook_url: {{ printf "%s#tfservingnoavailablemodel" $runbook }}
    - alert: TFServingPodNotReady
      expr: |-
        max by (namespace, pod) ({{ $ready }}) == 0
      for: {{ $r.podNotReady.for }}
      labels:
        severity: {{ $r.podNotReady.severity }}
      annotations:
        summary: >-
          A TF Serving pod has had no AVAILABLE version of {{ $model }} for a while.
        description: >-
          {{`{{ $labels.pod }}`}} in {{`{{ $labels.namespace }}`}} has not been ready for
          {{ $r.podNotReady.for }}: its first version has not loaded (TF Serving retries, then
          exits and restarts) or every version was unloaded.
        runbook_url: {{ printf "%s#tfservingpodnotready" $runbook }}
    - alert: TFServingContainerRestarting
      expr: |-
        max by (namespace, pod) (increase({{ $restarts }}[{{ $r.containerRestarts.window }}]))
          >= {{ $r.containerRestarts.threshold }}
      labels:
        severity: {{ $r.containerRestarts.severity }}
      annotations:
        summary: >-
          TF Serving keeps restarting.
        description: >-
          The {{ .Values.serving.container }} container of {{`{{ $labels.pod }}`}} in
          {{`{{ $labels.namespace }}`}} restarted {{`{{ $value | humanize }}`}} times in the
          last {{ $r.containerRestarts.window }}; a first version that fails to load makes
          TF Serving exit after its retries.
        runbook_url: {{ printf "%s#tfservingcontainerrestarting" $runbook }}
{{- end }}
{{- end }}
