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
*/}}
{{- define "monitoring.servingRuleGroups" -}}
{{- $sel := include "monitoring.servingMatchers" . }}
{{- $model := .Values.serving.modelName }}
{{- $window := .Values.rules.rateWindow }}
{{- $runbook := .Values.rules.runbookBaseUrl }}
{{- $r := .Values.rules }}
{{- $up := printf "up{%s}" $sel }}
{{- $requests := printf ":tensorflow:serving:request_count{%s, model_name=%q}" $sel $model }}
{{- $failed := printf ":tensorflow:serving:request_count{%s, model_name=%q, status!=\"OK\"}" $sel $model }}
{{- $latency := printf ":tensorflow:serving:request_latency_bucket{%s, model_name=%q}" $sel $model }}
{{- $versionPath := printf ".*/%s/[0-9]+/?" (regexQuoteMeta $model) }}
{{- $loaded := printf ":tensorflow:cc:saved_model:load_attempt_count{%s, status=\"success\", model_path=~%q}" $sel $versionPath }}
{{- $loadFailed := printf ":tensorflow:cc:saved_model:load_attempt_count{%s, status=\"fail\", model_path=~%q}" $sel $versionPath }}
{{- $queueing := printf ":tensorflow:serving:batching_session:queuing_latency_bucket{%s}" $sel }}
- name: tf-serving
  interval: {{ $r.interval }}
  rules:
    - alert: TFServingHighErrorRatio
      expr: |-
        (
          sum by (namespace, model_name) (rate({{ $failed }}[{{ $window }}]))
        /
          sum by (namespace, model_name) (rate({{ $requests }}[{{ $window }}]))
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
          {{ $window }} (threshold {{ $r.errorRatio.threshold }}).
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
          The 99th percentile of successful request latency for model
          {{`{{ $labels.model_name }}`}} in {{`{{ $labels.namespace }}`}} is
          {{`{{ $value | humanizeDuration }}`}} over the last {{ $window }} (threshold
          {{ $r.p99Latency.thresholdSeconds }}s).
        runbook_url: {{ printf "%s#tfservinghighp99latency" $runbook }}
    - alert: TFServingNoAvailableModel
      expr: |-
        absent(
          ({{ $up }} == 1)
          and on (namespace, job, instance)
          ({{ $loaded }} > 0)
        )
      for: {{ $r.noAvailableModel.for }}
      labels:
        severity: {{ $r.noAvailableModel.severity }}
        model_name: {{ $model }}
        {{- if ne .Values.backend "gke-managed-prometheus" }}
        namespace: {{ .Values.serving.namespace }}
        {{- end }}
      annotations:
        summary: >-
          No TF Serving pod serves a loaded version of {{ $model }}.
        description: >-
          No target of scrape job {{ include "monitoring.servingJob" . }} in
          {{ .Values.serving.namespace }} has been up with a successfully loaded SavedModel
          version of {{ $model }} for {{ $r.noAvailableModel.for }}; predictions for it fail.
        runbook_url: {{ printf "%s#tfservingnoavailablemodel" $runbook }}
    - alert: TFServingModelLoadFailed
      expr: |-
        sum by (namespace, instance, model_path) ({{ $loadFailed }}) > 0
      for: {{ $r.modelLoadFailure.for }}
      labels:
        severity: {{ $r.modelLoadFailure.severity }}
      annotations:
        summary: >-
          TF Serving failed to load a version of {{ $model }}.
        description: >-
          {{`{{ $labels.instance }}`}} in {{`{{ $labels.namespace }}`}} failed
          {{`{{ $value }}`}} time(s) to load the SavedModel {{`{{ $labels.model_path }}`}}
          since it started; that version does not become AVAILABLE.
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
{{- end }}
