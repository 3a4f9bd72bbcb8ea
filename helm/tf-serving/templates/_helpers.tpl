{{/*
Chart name, overridable; truncated to the 63 characters a label value allows.
*/}}
{{- define "tf-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name: <release>-<name>, or the release name when it already contains the name.
*/}}
{{- define "tf-serving.fullname" -}}
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
{{- define "tf-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable across upgrades, so never the version.
*/}}
{{- define "tf-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tf-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels on every object.
*/}}
{{- define "tf-serving.labels" -}}
helm.sh/chart: {{ include "tf-serving.chart" . }}
{{ include "tf-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tfx-kfp-gke
{{- end }}

{{/*
ServiceAccount used by the pods.
*/}}
{{- define "tf-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tf-serving.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference from {repository, tag, digest}: repository:tag, plus @digest when pinned.
*/}}
{{- define "tf-serving.image" -}}
{{- if .digest }}
{{- printf "%s:%s@%s" .repository .tag .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/*
Model base path TF Serving reads: the mounted claim or the GCS prefix.
*/}}
{{- define "tf-serving.modelBasePath" -}}
{{- if eq .Values.model.source "gcs" }}
{{- required "model.gcs.basePath (gs://<bucket>/serving/<model>) is required when model.source is gcs" .Values.model.gcs.basePath | trimSuffix "/" }}
{{- else }}
{{- printf "%s/%s" (trimSuffix "/" .Values.model.pvc.mountPath) .Values.model.name }}
{{- end }}
{{- end }}

{{/*
In-cluster REST URL of the Service (used by NOTES and the helm test).
*/}}
{{- define "tf-serving.restUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "tf-serving.fullname" .) .Release.Namespace (int .Values.service.httpPort) }}
{{- end }}

{{/*
Directory of the ConfigMap files in the container.
*/}}
{{- define "tf-serving.configDir" -}}
/etc/tf-serving
{{- end }}

{{/*
One NetworkPolicy peer from {namespace, podSelector}: pods matching podSelector ({} = all)
in the namespace of that name.
*/}}
{{- define "tf-serving.networkPolicyPeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    {{- toYaml (.podSelector | default dict) | nindent 4 }}
{{- end }}
