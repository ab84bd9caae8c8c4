{{/* Resource name prefix: the release name, or RELEASE-CHART. */}}
{{- define "sv.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels; call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "sv.labels" -}}
app.kubernetes.io/name: {{ include "sv.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/part-of: storage-valet
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sv.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sv.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "sv.webhookSecret" -}}
{{ include "sv.fullname" . }}-webhook-tls
{{- end -}}

{{/* The restricted Pod Security Standard, as the image runs it. */}}
{{- define "sv.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sv.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Spread replicas over nodes and zones; call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "sv.topologySpread" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "sv.selectorLabels" . | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "sv.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* The pod that runs `valet certs` (Job and CronJob). */}}
{{- define "sv.certsPod" -}}
metadata:
  labels:
    {{- include "sv.labels" (dict "ctx" . "component" "certs") | nindent 4 }}
    storage-valet.dev/inject: "false"
spec:
  serviceAccountName: {{ include "sv.fullname" . }}-certs
  restartPolicy: OnFailure
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "sv.podSecurityContext" . | nindent 4 }}
  containers:
    - name: certs
      image: {{ include "sv.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - certs
        - --service={{ include "sv.fullname" . }}-webhook
        - --namespace={{ .Release.Namespace }}
        - --secret={{ include "sv.webhookSecret" . }}
        - --webhook-config={{ include "sv.fullname" . }}
        - --days={{ .Values.selfManagedCerts.days }}
        - --renew-before={{ .Values.selfManagedCerts.renewBefore }}
      resources:
        requests:
          cpu: 10m
          memory: 32Mi
        limits:
          memory: 64Mi
      securityContext:
        {{- include "sv.containerSecurityContext" . | nindent 8 }}
{{- end -}}

{{/*
Refuses a PodDisruptionBudget that no eviction can satisfy (it would block
every node drain); call with (dict "name" "webhook" "v" .Values.webhook).
*/}}
{{- define "sv.checkPdb" -}}
{{- $replicas := int .v.replicas -}}
{{- $min := .v.minAvailable -}}
{{- $needed := 0 -}}
{{- if kindIs "string" $min -}}
{{- if not (regexMatch "^[0-9]+%$" $min) -}}
{{- fail (printf "%s.minAvailable %q: expected a number of pods or a percentage such as 50%%" .name $min) -}}
{{- end -}}
{{- $needed = div (add (mul $replicas (atoi (trimSuffix "%" $min))) 99) 100 -}}
{{- else -}}
{{- $needed = int $min -}}
{{- end -}}
{{- if ge $needed $replicas -}}
{{- fail (printf "%s.minAvailable=%v needs all %d pods of %s.replicas=%d up: the PodDisruptionBudget would never allow an eviction and would block every node drain. Raise %s.replicas or lower %s.minAvailable (0 allows every eviction)" .name $min $needed .name $replicas .name .name) -}}
{{- end -}}
{{- end -}}

{{/* --log-format and --log-level of a component; call with its values. */}}
{{- define "sv.logArgs" -}}
- --log-format={{ .logFormat }}
{{- with .logLevel }}
- --log-level={{ . }}
{{- end }}
{{- end -}}
