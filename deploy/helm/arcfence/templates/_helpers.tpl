{{/* The chart's name. */}}
{{- define "arcfence.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name: the release name when it contains the chart name. */}}
{{- define "arcfence.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "arcfence.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The labels that select the pods. */}}
{{- define "arcfence.selectorLabels" -}}
app.kubernetes.io/name: {{ include "arcfence.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of every object. */}}
{{- define "arcfence.labels" -}}
{{ include "arcfence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The arcfence config: .Values.config with the listeners the chart publishes. */}}
{{- define "arcfence.config" -}}
{{- $c := deepCopy (.Values.config | default dict) -}}
{{- $_ := set $c "listen" (printf "0.0.0.0:%v" .Values.ports.proxy) -}}
{{- $admin := deepCopy (get $c "admin" | default dict) -}}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%v" .Values.ports.admin) -}}
{{- $_ := set $c "admin" $admin -}}
{{- if .Values.dns.enabled -}}
{{- $dns := deepCopy (get $c "dns" | default dict) -}}
{{- $_ := set $dns "listen" (printf "0.0.0.0:%v" .Values.dns.containerPort) -}}
{{- if .Values.dns.upstream -}}
{{- $_ := set $dns "upstream" .Values.dns.upstream -}}
{{- end -}}
{{- $_ := set $c "dns" $dns -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}
