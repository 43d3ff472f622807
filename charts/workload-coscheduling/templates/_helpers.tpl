{{- define "wcs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wcs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "wcs.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wcs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wcs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wcs.labels" -}}
{{ include "wcs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "wcs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wcs.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wcs.leaseName" -}}
{{- default .Values.schedulerName .Values.leaderElection.leaseName -}}
{{- end -}}


{{- /*
wcs.checkPlugins stops the install when the free-form plugins or pluginConfig
would undo the profile's gang scheduling: pod-by-pod preemption or the in-tree
gang plugin beside ours, our plugin disabled at a point it runs at, or its args
set twice.
*/ -}}
{{- define "wcs.checkPlugins" -}}
{{- $ours := list "multiPoint" "queueSort" "preEnqueue" "preFilter" "postFilter" "reserve" "permit" -}}
{{- range $point, $set := .Values.plugins -}}
{{- range $set.enabled -}}
{{- if has .name (list "DefaultPreemption" "GangScheduling") -}}
{{- fail (printf "plugins.%s.enabled: %s would judge gang pods member by member beside WorkloadCoscheduling, which preempts and admits whole gangs; remove it (the chart disables it on purpose)" $point .name) -}}
{{- end -}}
{{- end -}}
{{- range $set.disabled -}}
{{- if or (eq .name "WorkloadCoscheduling") (and (eq .name "*") (has $point $ours) (ne $point "multiPoint")) -}}
{{- fail (printf "plugins.%s.disabled: %q would disable WorkloadCoscheduling at %s, and gangs would be placed partially" $point .name $point) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range .Values.pluginConfig -}}
{{- if eq .name "WorkloadCoscheduling" -}}
{{- fail "pluginConfig: WorkloadCoscheduling's args come from the plugin value (plugin.permitWaitingTimeSeconds, plugin.podGroupBackoffSeconds)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wcs.metricsService" -}}
{{- if or .Values.metricsService.enabled .Values.serviceMonitor.enabled -}}true{{- end -}}
{{- end -}}

{{- define "wcs.metricsReader" -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.serviceMonitor.tokenSecretName) -}}true{{- end -}}
{{- end -}}
