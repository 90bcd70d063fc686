{{/*
Expand the name of the chart.
*/}}
{{- define "wine-mlserver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "wine-mlserver.fullname" -}}
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
Create chart name and version as used by the chart label.
*/}}
{{- define "wine-mlserver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image tag, which is also the model version: .Values.image.tag or the chart's appVersion.
*/}}
{{- define "wine-mlserver.version" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "wine-mlserver.labels" -}}
helm.sh/chart: {{ include "wine-mlserver.chart" . }}
{{ include "wine-mlserver.selectorLabels" . }}
app.kubernetes.io/version: {{ include "wine-mlserver.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "wine-mlserver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wine-mlserver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
