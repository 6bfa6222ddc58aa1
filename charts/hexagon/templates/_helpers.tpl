{{/* Names, truncated to the 63 characters Kubernetes allows in a label value. */}}
{{- define "hexagon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hexagon.fullname" -}}
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

{{/* The one labels block every object carries. */}}
{{- define "hexagon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: hexagon
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "hexagon.operator.selector" -}}
app.kubernetes.io/name: hexagon-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hexagon.prometheus.selector" -}}
app.kubernetes.io/name: hexagon-prometheus
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Where the operator reads metrics; refuses contradictory values. */}}
{{- define "hexagon.prometheusURL" -}}
{{- if .Values.prometheus.bundled }}
{{- if .Values.prometheus.url }}
{{- fail "prometheus.bundled is true and prometheus.url is set: choose one (set bundled: false to use your own server)" }}
{{- end }}
{{- printf "http://%s-prometheus.%s.svc:9090" (include "hexagon.fullname" .) .Release.Namespace }}
{{- else }}
{{- required "prometheus.url is required when prometheus.bundled is false" .Values.prometheus.url }}
{{- end }}
{{- end }}
