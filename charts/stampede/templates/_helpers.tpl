{{/*
The chart name, or nameOverride.
*/}}
{{- define "stampede.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: fullnameOverride, else the release name when it contains the
chart name, else <release>-<chart>. Truncated to leave room for suffixes such as
"-operator" within the 63 characters of a DNS label.
*/}}
{{- define "stampede.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the operator's Deployment, Service, ClusterRole and bindings.
*/}}
{{- define "stampede.operator.fullname" -}}
{{- printf "%s-operator" (include "stampede.fullname" .) }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "stampede.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels of every object.
*/}}
{{- define "stampede.labels" -}}
helm.sh/chart: {{ include "stampede.chart" . }}
app.kubernetes.io/name: {{ include "stampede.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stampede
{{- end }}

{{/*
Selector labels of the operator (stable across upgrades: never add version labels here).
*/}}
{{- define "stampede.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stampede.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels of the operator's objects.
*/}}
{{- define "stampede.operator.labels" -}}
{{ include "stampede.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "stampede.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stampede.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "stampede.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Image of the k6 load-test runners.
*/}}
{{- define "stampede.k6Image" -}}
{{- .Values.k6Image | default (printf "ghcr.io/stampede-dev/stampede-k6:%s" .Chart.AppVersion) }}
{{- end }}

{{/*
Default stampede-service image for campaigns without spec.issuer.image.
*/}}
{{- define "stampede.serviceImage" -}}
{{- .Values.serviceImage | default (printf "ghcr.io/stampede-dev/stampede-service:%s" .Chart.AppVersion) }}
{{- end }}

{{/*
One env entry for a default connection, from a plain value or a Secret key; fails when
neither or both are set. Call with (dict "key" "redis" "env" "STAMPEDE_REDIS_URL"
"what" "the Redis URL" "conn" .Values.connections.redis).
*/}}
{{- define "stampede.connectionEnv" -}}
{{- $c := .conn | default dict }}
{{- $value := $c.value | default "" | toString }}
{{- $secret := $c.secretName | default "" | toString }}
{{- $key := $c.secretKey | default "" | toString }}
{{- if and $value $secret }}
{{- fail (printf "connections.%s: both value and secretName (%q) are set; keep one: --set connections.%s.value=null to read %s from the Secret, or --set connections.%s.secretName=null to use the plain value" .key $secret .key .env .key) }}
{{- else if $value }}
- name: {{ .env }}
  value: {{ $value | quote }}
{{- else if $secret }}
{{- if not $key }}
{{- fail (printf "connections.%s.secretKey is empty: name the key of Secret %q that holds %s (%s)" .key $secret .env .what) }}
{{- end }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ $key | quote }}
{{- else }}
{{- fail (printf "connections.%s: set connections.%s.value (%s) or connections.%s.secretName (+ secretKey) to a Secret holding it; the operator uses it as %s for campaigns that do not name their own" .key .key .what .key .env) }}
{{- end }}
{{- end }}
