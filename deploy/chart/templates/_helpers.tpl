{{/* The worker's name: "<release>-worker" (cubepaas-worker for release "cubepaas"). */}}
{{- define "cubepaas.worker.fullname" -}}
{{- printf "%s-worker" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cubepaas.worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cubepaas.worker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cubepaas.labels" -}}
app.kubernetes.io/part-of: cubepaas-devops
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cubepaas.worker.selectorLabels" -}}
app.kubernetes.io/name: cubepaas-worker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cubepaas.worker.labels" -}}
{{ include "cubepaas.labels" . }}
{{ include "cubepaas.worker.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "cubepaas.worker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The webhook receiver's name: "<release>-webhooks" (cubepaas-webhooks for release "cubepaas"). */}}
{{- define "cubepaas.webhook.fullname" -}}
{{- printf "%s-webhooks" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cubepaas.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create -}}
{{- default (include "cubepaas.webhook.fullname" .) .Values.webhook.serviceAccount.name -}}
{{- else -}}
{{- required "webhook.serviceAccount.name is required when webhook.serviceAccount.create is false" .Values.webhook.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cubepaas.webhook.selectorLabels" -}}
app.kubernetes.io/name: cubepaas-webhooks
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cubepaas.webhook.labels" -}}
{{ include "cubepaas.labels" . }}
{{ include "cubepaas.webhook.selectorLabels" . }}
app.kubernetes.io/component: webhooks
{{- end -}}
