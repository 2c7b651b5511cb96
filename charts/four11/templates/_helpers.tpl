{{/* Chart name, truncated to 63 characters (the DNS label limit). */}}
{{- define "four11.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release already contains the chart name. */}}
{{- define "four11.fullname" -}}
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

{{- define "four11.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "four11.labels" -}}
helm.sh/chart: {{ include "four11.chart" . }}
app.kubernetes.io/name: {{ include "four11.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: four11
{{- end }}

{{/* Selector labels: name and instance only (a component label is added per workload);
never the chart version, so upgrades do not orphan pods. */}}
{{- define "four11.selectorLabels" -}}
app.kubernetes.io/name: {{ include "four11.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Image of a service: (dict "root" $ "service" "publisher"). */}}
{{- define "four11.image" -}}
{{- $img := .root.Values.image -}}
{{- printf "%s/%s:%s" $img.repositoryPrefix .service (default .root.Chart.AppVersion $img.tag) }}
{{- end }}

{{- define "four11.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "four11.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret with the keys. */}}
{{- define "four11.keysSecret" -}}
{{- default (printf "%s-keys" (include "four11.fullname" .)) .Values.keys.existingSecret }}
{{- end }}

{{/* Secret item name of a group key: "/compute/light" -> "group.compute.light" (the same
mapping as `411 keygen-secret`); characters a Secret key cannot hold become "_". */}}
{{- define "four11.groupItem" -}}
{{- $parts := list -}}
{{- range splitList "/" . }}{{ if . }}{{ $parts = append $parts . }}{{ end }}{{ end -}}
{{- regexReplaceAll "[^-._a-zA-Z0-9]" (printf "group.%s" (join "." $parts)) "_" }}
{{- end }}

{{/* Key file path of a group key under the key dir: "/compute/light" -> "groups/compute/light". */}}
{{- define "four11.groupPath" -}}
{{- $parts := list -}}
{{- range splitList "/" . }}{{ if . }}{{ $parts = append $parts . }}{{ end }}{{ end -}}
{{- printf "groups/%s" (join "/" $parts) }}
{{- end }}

{{/* URL of the fileserver inside the cluster. */}}
{{- define "four11.masterUrl" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v%s" (include "four11.fullname" .) .Release.Namespace .Values.fileserver.service.port .Values.urldir }}
{{- end }}

{{/* Restricted container securityContext (used everywhere except the agent). */}}
{{- define "four11.restrictedContainer" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod securityContext of the non-root pods. */}}
{{- define "four11.restrictedPod" -}}
runAsNonRoot: true
runAsUser: {{ .Values.master.runAsUser }}
runAsGroup: {{ .Values.master.runAsUser }}
fsGroup: {{ .Values.master.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* HTTP probe on /healthz of a named port. */}}
{{- define "four11.probes" -}}
readinessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  initialDelaySeconds: 10
  periodSeconds: 20
  failureThreshold: 3
{{- end }}
