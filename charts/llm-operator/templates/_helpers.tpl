{{/* Names and labels shared by every template. */}}
{{- define "llm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "llm-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "llm-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "llm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: llm-operator
{{- end }}

{{- define "llm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Leader election needs kopf peering; one replica may run without it. */}}
{{- define "llm-operator.peering" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}
{{- .Values.leaderElection.peeringName }}
{{- end }}
{{- end }}

{{- define "llm-operator.catalogYaml" -}}
{{- if .Values.catalog.accelerators }}
{{- toYaml (dict "accelerators" .Values.catalog.accelerators) }}
{{- else }}
accelerators: []
{{- end }}
{{- end }}

{{/* The namespaces the operator watches, as a JSON list: watchNamespaces, else the release
namespace when namespaced, else [] (every namespace, -A, a ClusterRole). */}}
{{- define "llm-operator.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson (uniq .Values.watchNamespaces) -}}
{{- else if .Values.namespaced -}}
{{- toJson (list .Release.Namespace) -}}
{{- else -}}
[]
{{- end -}}
{{- end }}

{{/* The gateway: its own app name, so the operator's selectors never match its pods. */}}
{{- define "llm-operator.gateway.fullname" -}}
{{- printf "%s-gateway" (include "llm-operator.fullname" .) }}
{{- end }}

{{- define "llm-operator.gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-operator.name" . }}-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-operator.gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llm-operator.gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: llm-operator
{{- end }}

{{- define "llm-operator.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "llm-operator.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-operator.gateway.image" -}}
{{- printf "%s:%s" .Values.gateway.image.repository (default .Chart.AppVersion .Values.gateway.image.tag) }}
{{- end }}

{{/* The OpenAI base URL the operator writes into each LLMDeployment's status. */}}
{{- define "llm-operator.gateway.url" -}}
{{- printf "http://%s.%s.svc:%v/v1" (include "llm-operator.gateway.fullname" .) .Release.Namespace .Values.gateway.service.port }}
{{- end }}
