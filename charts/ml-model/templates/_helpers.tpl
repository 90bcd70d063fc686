{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ml-model.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name: the release name, plus the chart name unless it already holds it. */}}
{{- define "ml-model.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The image tag is the model version; it defaults to the chart's appVersion. */}}
{{- define "ml-model.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* The model version as a label value ("+" is not allowed in labels). */}}
{{- define "ml-model.versionLabel" -}}
{{- include "ml-model.tag" . | replace "+" "_" | trunc 63 | trimSuffix "-" | trimSuffix "." -}}
{{- end -}}

{{/* Selector labels: immutable, so nothing version-specific. Each release (track)
selects its own pods by its instance, the stable one exactly as before tracks. */}}
{{- define "ml-model.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ml-model.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Service's selector. The model Service (stable, serveAllTracks) selects the
model-server pods of every track: labels the stable pods have always carried, so
neither switching it on nor off rolls or drops them. Otherwise this release's pods. */}}
{{- define "ml-model.serviceSelector" -}}
{{- if .Values.serveAllTracks -}}
{{- if ne .Values.track "stable" -}}
{{- fail (printf "serveAllTracks is for the stable release's model Service, not track %s" .Values.track) -}}
{{- end -}}
app.kubernetes.io/name: {{ include "ml-model.name" . }}
app.kubernetes.io/component: model-server
{{- else -}}
{{ include "ml-model.selectorLabels" . }}
{{- end -}}
{{- end -}}

{{- define "ml-model.labels" -}}
{{ include "ml-model.selectorLabels" . }}
app.kubernetes.io/version: {{ include "ml-model.versionLabel" . | quote }}
app.kubernetes.io/component: model-server
app.kubernetes.io/part-of: rollout-harness
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
rollout-harness/model-version: {{ include "ml-model.versionLabel" . | quote }}
{{- if ne .Values.track "stable" }}
rollout-harness/track: {{ .Values.track }}
{{- end }}
{{- end -}}

{{/* Grace period: covers preStop (if hooked), the drain period, shutdown and a margin
(unless set). Without the hook the drain starts on SIGTERM, so it is still covered. */}}
{{- define "ml-model.gracePeriod" -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else if and .Values.gracefulDrain.enabled .Values.gracefulDrain.preStop -}}
{{- add .Values.drain.preStopSeconds .Values.drain.seconds .Values.drain.shutdownTimeoutSeconds .Values.drain.marginSeconds -}}
{{- else if .Values.gracefulDrain.enabled -}}
{{- add .Values.drain.seconds .Values.drain.shutdownTimeoutSeconds .Values.drain.marginSeconds -}}
{{- else -}}
{{- add .Values.drain.shutdownTimeoutSeconds .Values.drain.marginSeconds -}}
{{- end -}}
{{- end -}}

{{/* Pod Security "restricted": pod level. */}}
{{- define "ml-model.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod Security "restricted": container level. */}}
{{- define "ml-model.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
