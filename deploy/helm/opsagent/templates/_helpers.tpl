{{- define "opsagent.labels" -}}
app.kubernetes.io/name: opsagent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "opsagent.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{- define "opsagent.env" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{- define "opsagent.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
{{- end -}}


{{/*
An agent config rendered with tpl; fails when its telemetry.http_listen is missing or names
another port than httpPort (the probes and containerPort use httpPort).
Called with (dict "config" TEXT "what" VALUE-NAME "root" $).
*/}}
{{- define "opsagent.config" -}}
{{- $text := tpl .config .root -}}
{{- $port := int .root.Values.httpPort -}}
{{- $want := printf "(?m)^\\s*http_listen\\s*=\\s*\"[^\"]*:%d\"\\s*(#.*)?$" $port -}}
{{- if not (regexMatch $want $text) -}}
{{- fail (printf "%s: [telemetry] http_listen must listen on httpPort %d (e.g. http_listen = \"0.0.0.0:{{ .Values.httpPort }}\"): the probes use that port" .what $port) -}}
{{- end -}}
{{- $text -}}
{{- end -}}
