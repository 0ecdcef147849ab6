{{/* Names and labels shared by every object of the release. */}}

{{- define "usher.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "usher.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service that gives every pod a stable peer name. */}}
{{- define "usher.peers" -}}
{{- printf "%s-peers" (include "usher.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "usher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "usher.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "usher.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "usher.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "usher.secretName" -}}
{{- default (include "usher.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The Secret with the peer TLS material: ca.crt, tls.crt, tls.key. */}}
{{- define "usher.peerTlsSecret" -}}
{{- default (printf "%s-peer-tls" (include "usher.fullname" .)) .Values.peerTls.existingSecret -}}
{{- end -}}

{{- define "usher.adminTlsSecret" -}}
{{- default (printf "%s-admin-tls" (include "usher.fullname" .)) .Values.adminTls.existingSecret -}}
{{- end -}}

{{/* A pod's peer address: NAME.PEERS.NAMESPACE.svc.DOMAIN:5270 */}}
{{- define "usher.peerHost" -}}
{{- printf "%s.%s.svc.%s" (include "usher.peers" .) .Release.Namespace .Values.cluster.clusterDomain -}}
{{- end -}}

{{/* Refuses settings that cannot work, at install time rather than in a crash loop. */}}
{{- define "usher.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.cluster.enabled) -}}
{{- fail "replicaCount > 1 needs cluster.enabled=true: separate nodes would each have their own invites" -}}
{{- end -}}
{{- if and .Values.cluster.enabled (empty .Values.scylla.nodes) -}}
{{- fail "cluster.enabled needs scylla.nodes: every node must see the same accounts" -}}
{{- end -}}
{{- if and .Values.cluster.enabled (lt (int .Values.replicaCount) (int .Values.cluster.replication)) -}}
{{- fail "replicaCount must be at least cluster.replication (voters per shard)" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (empty .Values.ingress.host) -}}
{{- fail "ingress.enabled needs ingress.host" -}}
{{- end -}}
{{- end -}}
