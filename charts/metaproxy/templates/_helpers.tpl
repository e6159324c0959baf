{{/* Names, labels, and the per-zone view of the values. */}}

{{- define "metaproxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "metaproxy.fullname" -}}
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

{{/* A Kubernetes object name, refused (not truncated: two zones could collide) when too long. */}}
{{- define "metaproxy.objectName" -}}
{{- $name := index . 0 }}
{{- if gt (len $name) 63 }}
{{- fail (printf "the object name %q is longer than 63 characters: shorten fullnameOverride, the release name or the zone name" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "metaproxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "metaproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: metaproxy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "metaproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "metaproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The zone of a proxy set: (list $ $zone). */}}
{{- define "metaproxy.zone.selectorLabels" -}}
{{- $ := index . 0 }}
{{- $zone := index . 1 }}
{{- include "metaproxy.selectorLabels" $ }}
app.kubernetes.io/component: proxy
metaproxy.pegasus.io/zone: {{ $zone.name }}
{{- end }}

{{- define "metaproxy.zone.fullname" -}}
{{- $ := index . 0 }}
{{- $zone := index . 1 }}
{{- include "metaproxy.objectName" (list (printf "%s-%s" (include "metaproxy.fullname" $) $zone.name)) }}
{{- end }}

{{- define "metaproxy.zone.adminServiceName" -}}
{{- $ := index . 0 }}
{{- $zone := index . 1 }}
{{- include "metaproxy.objectName" (list (printf "%s-%s-admin" (include "metaproxy.fullname" $) $zone.name)) }}
{{- end }}

{{- define "metaproxy.operator.fullname" -}}
{{- include "metaproxy.objectName" (list (printf "%s-operator" (include "metaproxy.fullname" .))) }}
{{- end }}

{{- define "metaproxy.operator.selectorLabels" -}}
{{- include "metaproxy.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "metaproxy.operator.serviceAccountName" -}}
{{- default (include "metaproxy.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{- define "metaproxy.operator.leaseName" -}}
{{- default (include "metaproxy.operator.fullname" .) .Values.operator.leaseName }}
{{- end }}

{{- define "metaproxy.operator.watchNamespace" -}}
{{- default .Release.Namespace .Values.operator.watch.namespace }}
{{- end }}

{{/* repository[:tag][@digest]; the tag defaults to the chart's appVersion. */}}
{{- define "metaproxy.image" -}}
{{- $ := index . 0 }}
{{- $image := index . 1 }}
{{- $ref := printf "%s:%s" $image.repository (default $.Chart.AppVersion $image.tag | toString) }}
{{- if $image.digest }}
{{- $ref = printf "%s@%s" $ref $image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* Milliseconds in a duration as the binaries write them: 500ms, 10s, 1m30s, 2h. */}}
{{- define "metaproxy.millis" -}}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" (toString .) -1 }}
{{- $n := regexFind "^[0-9]+" . | atoi }}
{{- if hasSuffix "ms" . }}
{{- $total = add $total $n }}
{{- else if hasSuffix "s" . }}
{{- $total = add $total (mul $n 1000) }}
{{- else if hasSuffix "m" . }}
{{- $total = add $total (mul $n 60000) }}
{{- else }}
{{- $total = add $total (mul $n 3600000) }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
Flags from a settings map: "--name=value" per key, sorted; null values are left out. YAML numbers
arrive as floats and are printed as integers.
*/}}
{{- define "metaproxy.flags" -}}
{{- range $name, $value := . }}
{{- if not (kindIs "invalid" $value) }}
{{- if kindIs "float64" $value }}
{{- $value = int64 $value }}
{{- end }}
- {{ printf "--%s=%v" $name $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The proxy settings of a zone: proxy.settings with the zone's settings over them. */}}
{{- define "metaproxy.zone.settings" -}}
{{- $ := index . 0 }}
{{- $zone := index . 1 }}
{{- $settings := dict }}
{{- range $k, $v := $.Values.proxy.settings }}
{{- $_ := set $settings $k $v }}
{{- end }}
{{- range $k, $v := ($zone.settings | default dict) }}
{{- $_ := set $settings $k $v }}
{{- end }}
{{- toJson $settings }}
{{- end }}

{{/*
One field of a zone's scheduling, else of proxy.scheduling: (list $ $zone "field"). hasKey, not
`default`, so that a zone can say false.
*/}}
{{- define "metaproxy.zone.scheduling" -}}
{{- $ := index . 0 }}
{{- $zone := index . 1 }}
{{- $field := index . 2 }}
{{- $own := $zone.scheduling | default dict }}
{{- if hasKey $own $field }}
{{- toJson (get $own $field) }}
{{- else }}
{{- toJson (get $.Values.proxy.scheduling $field) }}
{{- end }}
{{- end }}

{{/* Every zone the operator writes: this release's and operator.extraZones. */}}
{{- define "metaproxy.operator.zones" -}}
{{- $zones := list }}
{{- range .Values.zones }}
{{- $zones = append $zones (dict "name" .name "hosts" .zookeeper.hosts "root" .zookeeper.root "observer" (printf "http://%s.%s.svc:%v" (include "metaproxy.zone.adminServiceName" (list $ .)) $.Release.Namespace $.Values.proxy.ports.admin)) }}
{{- end }}
{{- range .Values.operator.extraZones }}
{{- $zones = append $zones (dict "name" .name "hosts" .zookeeper.hosts "root" .zookeeper.root "observer" (.observer | default "")) }}
{{- end }}
{{- toJson $zones }}
{{- end }}

{{/* The ZooKeeper credentials volume and its mount, when enabled: the proxies' Secret, or with
"operator" as .side the operator's (operatorExistingSecret, else the same). */}}
{{- define "metaproxy.zkAuth.volume" -}}
{{- $auth := .Values.zookeeper.auth -}}
{{- if $auth.enabled -}}
- name: zk-auth
  secret:
    secretName: {{ eq (.side | default "proxy") "operator" | ternary ($auth.operatorExistingSecret | default $auth.existingSecret) $auth.existingSecret }}
    # 0440: read for the owner and the pods' group (fsGroup).
    defaultMode: 288
    items:
      - key: {{ .Values.zookeeper.auth.key }}
        path: auth
{{- end }}
{{- end }}

{{- define "metaproxy.zkAuth.mount" -}}
{{- if .Values.zookeeper.auth.enabled -}}
- name: zk-auth
  mountPath: {{ .Values.zookeeper.auth.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "metaproxy.zkAuth.flag" -}}
{{- if .Values.zookeeper.auth.enabled -}}
- {{ printf "--zk-auth-file=%s/auth" .Values.zookeeper.auth.mountPath | quote }}
{{- if and (eq (.side | default "proxy") "operator") .Values.zookeeper.auth.readerDigest }}
- {{ printf "--zk-reader-digest=%s" .Values.zookeeper.auth.readerDigest | quote }}
{{- end }}
{{- end }}
{{- end }}
