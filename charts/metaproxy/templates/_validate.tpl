{{/*
What values.schema.json cannot say: rules across fields. Each refusal names the value to change.
*/}}
{{- define "metaproxy.validate" -}}
{{- $names := dict }}
{{- range $i, $zone := .Values.zones }}
{{- if hasKey $names $zone.name }}
{{- fail (printf "zones[%d]: zone %q is listed twice" $i $zone.name) }}
{{- end }}
{{- $_ := set $names $zone.name true }}
{{- $settings := include "metaproxy.zone.settings" (list $ $zone) | fromJson }}
{{- $grace := include "metaproxy.millis" (get $settings "shutdown-grace" | default "10s") | atoi }}
{{- if lt $grace 1 }}
{{- fail (printf "zones[%d] (%s): settings.shutdown-grace must be more than zero" $i $zone.name) }}
{{- end }}
{{- end }}
{{- if .Values.operator.enabled }}
{{- range $i, $zone := .Values.operator.extraZones }}
{{- if hasKey $names $zone.name }}
{{- fail (printf "operator.extraZones[%d]: zone %q is listed twice (in zones or extraZones)" $i $zone.name) }}
{{- end }}
{{- $_ := set $names $zone.name true }}
{{- end }}
{{- if and .Values.operator.defaultZone (not (hasKey $names .Values.operator.defaultZone)) }}
{{- fail (printf "operator.defaultZone: %q is not one of the zones (%s)" .Values.operator.defaultZone (keys $names | sortAlpha | join ", ")) }}
{{- end }}
{{- if and .Values.operator.watch.allNamespaces .Values.operator.watch.namespace }}
{{- fail "operator.watch: give allNamespaces or namespace, not both" }}
{{- end }}
{{- end }}
{{- if and .Values.zookeeper.auth.enabled (not .Values.zookeeper.auth.existingSecret) }}
{{- fail "zookeeper.auth.enabled needs zookeeper.auth.existingSecret: the name of a Secret holding user:password" }}
{{- end }}
{{- end }}
