{{/* Names and labels, as `helm create` spells them. */}}
{{- define "scopegate.ownsWorkload" -}}
{{- if or (ne .Values.mode "sidecar") .Values.sidecar.standalone }}true{{ end }}
{{- end }}

{{- define "scopegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scopegate.fullname" -}}
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

{{- define "scopegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scopegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scopegate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "scopegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "scopegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scopegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "scopegate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The port of the listener clients reach: the authz listener in authz mode. */}}
{{- define "scopegate.servingPort" -}}
{{- if eq .Values.mode "authz" }}{{ .Values.authz.port }}{{ else }}{{ .Values.ports.http }}{{ end }}
{{- end }}

{{- define "scopegate.servingPortName" -}}
{{- if eq .Values.mode "authz" }}authz{{ else }}http{{ end }}
{{- end }}

{{- define "scopegate.configMapName" -}}
{{- default (printf "%s-config" (include "scopegate.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}

{{/*
The config file scopegate reads. The chart owns the listeners and file paths (so probes,
Service and mounts agree with them); everything else comes from .Values.config.
*/}}
{{- define "scopegate.config" -}}
{{- $c := omit (deepCopy .Values.config) "existingConfigMap" }}
{{- $_ := set $c "admin_listen" (printf "0.0.0.0:%v" .Values.ports.admin) }}
{{- $_ := set $c "policy_file" (printf "/etc/scopegate/policy/%s" .Values.policy.key) }}
{{- if eq .Values.mode "authz" }}
{{- $c = omit $c "listen" "upstreams" "environments" }}
{{- $_ := set $c "authz" (dict "listen" (printf "0.0.0.0:%v" .Values.authz.port) "statuses" .Values.authz.statuses) }}
{{- else }}
{{- $_ := set $c "listen" (printf "0.0.0.0:%v" .Values.ports.http) }}
{{- $up := deepCopy (default dict $c.upstreams) }}
{{- if and (eq .Values.mode "sidecar") (not (hasKey $up "default")) }}
{{- $_ := set $up "default" (printf "http://127.0.0.1:%v" .Values.sidecar.app.port) }}
{{- end }}
{{- if not (hasKey $up "default") }}
{{- fail "config.upstreams.default is required in gateway mode" }}
{{- end }}
{{- $_ := set $c "upstreams" $up }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" "/etc/scopegate/tls/tls.crt" "key_file" "/etc/scopegate/tls/tls.key" }}
{{- if .Values.tls.clientCA }}
{{- $_ := set $tls "client_ca_file" "/etc/scopegate/tls/ca.crt" }}
{{- end }}
{{- $_ := set $c "tls" $tls }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/* A scopegate duration ("25s", "2m", "500ms", "1h") in whole seconds, rounded up. */}}
{{- define "scopegate.seconds" -}}
{{- $d := toString . }}
{{- if hasSuffix "ms" $d }}{{ div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if hasSuffix "s" $d }}{{ trimSuffix "s" $d | atoi }}
{{- else if hasSuffix "m" $d }}{{ mul (trimSuffix "m" $d | atoi) 60 }}
{{- else if hasSuffix "h" $d }}{{ mul (trimSuffix "h" $d | atoi) 3600 }}
{{- else }}{{ fail (printf "config.limits.drain_timeout: %q is not a duration like 25s" $d) }}
{{- end }}
{{- end }}

{{/* Fails the render when the kubelet would kill a pod before its drain can end. */}}
{{- define "scopegate.checkGracePeriod" -}}
{{- $drain := include "scopegate.seconds" (dig "limits" "drain_timeout" "30s" .Values.config) | atoi }}
{{- if le (int .Values.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.limits.drain_timeout (%vs)" .Values.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- end }}

{{/* The pod annotations that roll the pods: the config only. A policy change is hot-reloaded. */}}
{{- define "scopegate.podAnnotations" -}}
{{- if not .Values.config.existingConfigMap }}
checksum/config: {{ include "scopegate.config" . | sha256sum }}
{{- end }}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The scopegate container, without restartPolicy (see scopegate.nativeSidecar). */}}
{{- define "scopegate.container" -}}
name: scopegate
image: {{ include "scopegate.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["run", "--config", "/etc/scopegate/config/scopegate.yaml"]
ports:
  - name: {{ include "scopegate.servingPortName" . }}
    containerPort: {{ include "scopegate.servingPort" . }}
    protocol: TCP
  - name: admin
    containerPort: {{ .Values.ports.admin }}
    protocol: TCP
{{- if or .Values.secretEnv .Values.extraEnv }}
env:
  {{- range .Values.secretEnv }}
  - name: {{ .name }}
    valueFrom:
      secretKeyRef:
        name: {{ .secretName }}
        key: {{ .key }}
        {{- if hasKey . "optional" }}
        optional: {{ .optional }}
        {{- end }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- with .Values.envFromSecrets }}
envFrom:
  {{- range . }}
  - secretRef:
      name: {{ .name }}
      {{- if hasKey . "optional" }}
      optional: {{ .optional }}
      {{- end }}
  {{- end }}
{{- end }}
startupProbe:
  httpGet: { path: /readyz, port: admin }
  {{- toYaml .Values.probes.startup | nindent 2 }}
readinessProbe:
  httpGet: { path: /readyz, port: admin }
  {{- toYaml .Values.probes.readiness | nindent 2 }}
livenessProbe:
  httpGet: { path: /healthz, port: admin }
  {{- toYaml .Values.probes.liveness | nindent 2 }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - { name: scopegate-config, mountPath: /etc/scopegate/config, readOnly: true }
  - { name: scopegate-policy, mountPath: /etc/scopegate/policy, readOnly: true }
  {{- if .Values.tls.enabled }}
  - { name: scopegate-tls, mountPath: /etc/scopegate/tls, readOnly: true }
  {{- end }}
  {{- range .Values.secretMounts }}
  - { name: {{ .name }}, mountPath: {{ .mountPath }}, readOnly: true }
  {{- end }}
{{- end }}

{{/*
scopegate as a native sidecar: put this in the app pod's `initContainers`. Kubernetes
(>= 1.29) starts it before the app containers, keeps it running beside them, and stops it
after them, so the proxy drains the app's last requests. Usage from a chart that depends on
this one: {{ include "scopegate.nativeSidecar" . | nindent 8 }} with scopegate's values in
scope, plus {{ include "scopegate.volumes" . }} among the pod's volumes.
*/}}
{{- define "scopegate.nativeSidecar" -}}
- {{ include "scopegate.container" . | nindent 2 | trim }}
  restartPolicy: Always
{{- end }}

{{- define "scopegate.volumes" -}}
- name: scopegate-config
  configMap:
    name: {{ include "scopegate.configMapName" . }}
- name: scopegate-policy
{{- if .Values.policy.existingSecret }}
  secret:
    secretName: {{ .Values.policy.existingSecret }}
{{- else }}
  configMap:
    name: {{ default (printf "%s-policy" (include "scopegate.fullname" .)) .Values.policy.existingConfigMap }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: scopegate-tls
  secret:
    secretName: {{ required "tls.secretName is required when tls.enabled" .Values.tls.secretName }}
{{- end }}
{{- range .Values.secretMounts }}
- name: {{ .name }}
  secret:
    secretName: {{ .secretName }}
    {{- if hasKey . "optional" }}
    optional: {{ .optional }}
    {{- end }}
{{- end }}
{{- end }}

{{/* The pod spec shared by every mode; the scopegate container goes where the mode puts it. */}}
{{- define "scopegate.podSpec" -}}
{{- include "scopegate.checkGracePeriod" . }}
serviceAccountName: {{ include "scopegate.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq .Values.mode "sidecar" }}
initContainers:
  {{- include "scopegate.nativeSidecar" . | nindent 2 }}
containers:
  - name: {{ .Values.sidecar.app.name }}
    image: {{ required "sidecar.app.image is required in sidecar mode" .Values.sidecar.app.image | quote }}
    {{- with .Values.sidecar.app.args }}
    args:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.sidecar.app.env }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    # No ports: the app listens on 127.0.0.1:{{ .Values.sidecar.app.port }}, reachable only through scopegate.
    {{- with .Values.sidecar.app.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.sidecar.app.securityContext | nindent 6 }}
{{- else }}
containers:
  - {{ include "scopegate.container" . | nindent 4 | trim }}
{{- end }}
volumes:
  {{- include "scopegate.volumes" . | nindent 2 }}
{{- end }}
