{{/* Chart name, truncated to a DNS label. */}}
{{- define "infergate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name used for every object of the release. */}}
{{- define "infergate.fullname" -}}
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

{{- define "infergate.controlPlaneName" -}}
{{- printf "%s-controlplane" (include "infergate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "infergate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: infergate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the control-plane pods. */}}
{{- define "infergate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infergate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controlplane
{{- end }}

{{- define "infergate.controlPlaneImage" -}}
{{- printf "%s:%s" .Values.controlPlane.image.repository (default .Chart.AppVersion .Values.controlPlane.image.tag) }}
{{- end }}

{{- define "infergate.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) }}
{{- end }}

{{/* In-cluster address proxies dial for xDS. */}}
{{- define "infergate.xdsAddress" -}}
{{- printf "%s.%s.svc:%d" (include "infergate.controlPlaneName" .) .Release.Namespace (int .Values.controlPlane.xdsPort) }}
{{- end }}

{{- define "infergate.parametersName" -}}
{{- printf "%s-proxy-parameters" (include "infergate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
