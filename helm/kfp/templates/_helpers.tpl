{{/*
Names, labels, images and security contexts shared by every template.

Naming rule: Deployments, ServiceAccounts, Roles and ConfigMaps that only this chart refers to
are named <fullname>-<component>. Objects KFP binaries, Argo or tools find by a fixed name keep
the upstream name, defined once below: the API server, metadata-writer, UI, launcher and kfp SDK
assume them (e.g. the metadata writer dials metadata-grpc-service.<namespace>, the persistence
agent dials ml-pipeline, the launcher reads the ConfigMap kfp-launcher, Argo's controller the
ConfigMap artifact-repositories). Hence one release per namespace.
*/}}

{{- define "kfp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kfp.fullname" -}}
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

{{- define "kfp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "kfp.labels" -}}
helm.sh/chart: {{ include "kfp.chart" . }}
{{ include "kfp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tfx-kfp-gke
{{- end }}

{{- define "kfp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kfp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of a component's objects: (dict "ctx" $ "component" "api-server"). */}}
{{- define "kfp.componentLabels" -}}
{{ include "kfp.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector of a component's pods: (dict "ctx" $ "component" "api-server"). */}}
{{- define "kfp.componentSelectorLabels" -}}
{{ include "kfp.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* <fullname>-<component>: (dict "ctx" $ "component" "api-server"). */}}
{{- define "kfp.componentName" -}}
{{- printf "%s-%s" (include "kfp.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fixed upstream names (see the top of this file). */}}
{{- define "kfp.apiServer.serviceName" -}}ml-pipeline{{- end }}
{{- define "kfp.ui.serviceName" -}}ml-pipeline-ui{{- end }}
{{- define "kfp.metadataGrpc.serviceName" -}}metadata-grpc-service{{- end }}
{{- define "kfp.metadataEnvoy.serviceName" -}}metadata-envoy-service{{- end }}
{{- define "kfp.mysql.serviceName" -}}mysql{{- end }}
{{- define "kfp.seaweedfs.serviceName" -}}seaweedfs{{- end }}
{{- define "kfp.cacheServer.serviceName" -}}cache-server{{- end }}
{{- define "kfp.launcherConfigMapName" -}}kfp-launcher{{- end }}
{{- define "kfp.artifactRepositoriesConfigMapName" -}}artifact-repositories{{- end }}
{{- /* SeaweedFS: the chart's generated Secret unless one is given. GCS: the HMAC key, which
values.schema.json already requires; this guard covers --skip-schema-validation. */}}
{{- define "kfp.objectStoreSecretName" -}}
{{- if .Values.objectStore.existingSecret }}
{{- .Values.objectStore.existingSecret }}
{{- else if eq .Values.objectStore.type "gcs" }}
{{- fail "objectStore.existingSecret (an HMAC key: keys accesskey, secretkey) is required for objectStore.type=gcs" }}
{{- else }}
{{- "mlpipeline-minio-artifact" }}
{{- end }}
{{- end }}

{{/* Ports of the fixed Services. */}}
{{- define "kfp.apiServer.httpPort" -}}8888{{- end }}
{{- define "kfp.apiServer.grpcPort" -}}8887{{- end }}
{{- define "kfp.metadataGrpc.port" -}}8080{{- end }}
{{- define "kfp.metadataEnvoy.port" -}}9090{{- end }}
{{- define "kfp.seaweedfs.port" -}}9000{{- end }}

{{/* <service>.<namespace>.svc.<clusterDomain> */}}
{{- define "kfp.serviceHost" -}}
{{- printf "%s.%s.svc.%s" .service .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/* Database address and credentials. */}}
{{- define "kfp.database.host" -}}
{{- if or (eq .Values.database.type "mysql") .Values.database.cloudSqlProxy.enabled }}
{{- include "kfp.serviceHost" (dict "ctx" . "service" (include "kfp.mysql.serviceName" .)) }}
{{- else }}
{{- required "database.host is required for database.type=external without cloudSqlProxy" .Values.database.host }}
{{- end }}
{{- end }}

{{- define "kfp.database.secretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if eq .Values.database.type "external" }}
{{- fail "database.existingSecret (keys username, password) is required for database.type=external" }}
{{- else }}
{{- include "kfp.componentName" (dict "ctx" . "component" "mysql") }}
{{- end }}
{{- end }}

{{/* Env vars DB_USER / DB_PASSWORD from the database Secret, for components to reference as $(DB_...). */}}
{{- define "kfp.database.credentialsEnv" -}}
- name: DB_USER
  valueFrom:
    secretKeyRef:
      name: {{ include "kfp.database.secretName" . }}
      key: username
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kfp.database.secretName" . }}
      key: password
{{- end }}

{{/* Object store. */}}
{{- define "kfp.objectStore.pipelineRoot" -}}
{{- if .Values.objectStore.pipelineRoot }}
{{- .Values.objectStore.pipelineRoot }}
{{- else if eq .Values.objectStore.type "gcs" }}
{{- printf "gs://%s/pipeline-root" .Values.objectStore.bucket }}
{{- else }}
{{- printf "s3://%s/v2/artifacts" .Values.objectStore.bucket }}
{{- end }}
{{- end }}

{{- define "kfp.seaweedfs.endpoint" -}}
{{- printf "%s:%s" (include "kfp.serviceHost" (dict "ctx" . "service" (include "kfp.seaweedfs.serviceName" .))) (include "kfp.seaweedfs.port" .) }}
{{- end }}

{{/* GCS's S3 interoperability endpoint (HTTPS on 443), reached with an HMAC key. */}}
{{- define "kfp.gcs.s3Host" -}}storage.googleapis.com{{- end }}

{{/* image reference: (dict "ctx" $ "image" .Values.apiServer.image); an empty tag is the KFP release. */}}
{{- define "kfp.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* Pod security context: the chart default merged with a component's (dict "ctx" $ "override" {...}). */}}
{{- define "kfp.podSecurityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .ctx.Values.podSecurityContext) (.override | default dict)) }}
{{- end }}

{{- define "kfp.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{- define "kfp.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* ServiceAccount annotations with the Workload Identity binding: (dict "ctx" $ "annotations" {...}). */}}
{{- define "kfp.workloadIdentityAnnotations" -}}
{{- $annotations := deepCopy (.annotations | default dict) }}
{{- with .ctx.Values.workloadIdentity.gcpServiceAccount }}
{{- $_ := set $annotations "iam.gke.io/gcp-service-account" . }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The projected token KFP's persistence agent and scheduled-workflow controller read. */}}
{{- define "kfp.pipelinesTokenVolume" -}}
- name: kfp-token
  projected:
    sources:
      - serviceAccountToken:
          path: {{ .path }}
          audience: pipelines.kubeflow.org
          expirationSeconds: 3600
{{- end }}
