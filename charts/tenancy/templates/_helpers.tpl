{{/*
Object names are fixed, as config/default makes them: the manager's RBAC and code refer to them
(the webhook configurations it updates, the Secrets it writes), so install one release per cluster.
*/}}

{{/*
tenancy.metadata renders an object's metadata. It takes a dict:
  root        the top-level context
  name        the object's name
  namespaced  true for a namespaced object (it goes to the release namespace)
  component   manager, authd or webhook: adds config/'s app.kubernetes.io labels
  labels      more labels of the object (optional)
  annotations annotations of the object (optional)
Helm's labels and .Values.commonLabels/commonAnnotations go on every object; config/'s labels win
over commonLabels.
*/}}
{{- define "tenancy.metadata" -}}
name: {{ .name }}
{{- if .namespaced }}
namespace: {{ .root.Release.Namespace }}
{{- end }}
{{- $labels := dict }}
{{- if .component }}
{{- $labels = dict "app.kubernetes.io/name" "tenancy" "app.kubernetes.io/component" .component }}
{{- end }}
{{- $labels = merge $labels (.labels | default (dict)) (include "tenancy.helmLabels" .root | fromYaml) .root.Values.commonLabels }}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- with merge (dict) (.annotations | default (dict)) .root.Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* tenancy.helmLabels are the labels Helm's conventions add to every object. */}}
{{- define "tenancy.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
tenancy.selector selects a component's pods: the labels of config/, which a Deployment's selector
cannot change after it is created.
*/}}
{{- define "tenancy.selector" -}}
app.kubernetes.io/name: tenancy
app.kubernetes.io/component: {{ . }}
{{- end }}

{{/*
tenancy.podMetadata renders a pod template's metadata. It takes a dict: root, component and values
(the component's values). The checksum of the settings rolls the pods when the settings change.
*/}}
{{- define "tenancy.podMetadata" -}}
{{- $labels := merge (include "tenancy.selector" .component | fromYaml) .values.podLabels .root.Values.commonLabels }}
{{- $checksum := dict "checksum/settings" (include "tenancy.settings" .root | sha256sum) }}
{{- $annotations := merge $checksum .values.podAnnotations .root.Values.commonAnnotations -}}
labels:
  {{- toYaml $labels | nindent 2 }}
annotations:
  {{- toYaml $annotations | nindent 2 }}
{{- end }}

{{/*
tenancy.image is a component's image reference; the tag defaults to the chart's appVersion. It
takes a dict: root and values (the component's values).
*/}}
{{- define "tenancy.image" -}}
{{ .values.image.repository }}:{{ .values.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{/*
tenancy.settings is the data of the ConfigMap tenancy-settings, which both binaries read, so that
they agree (config/default's configMapGenerator).
*/}}
{{- define "tenancy.settings" -}}
public-url: {{ .Values.publicURL | quote }}
username-prefix: {{ .Values.usernamePrefix | quote }}
platform-admin-users: {{ join "," .Values.platformAdminUsers | quote }}
{{- end }}

{{/*
tenancy.settingsEnv are the environment variables both containers read from tenancy-settings and
pass on as flags.
*/}}
{{- define "tenancy.settingsEnv" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: PUBLIC_URL
  valueFrom:
    configMapKeyRef:
      name: tenancy-settings
      key: public-url
- name: USERNAME_PREFIX
  valueFrom:
    configMapKeyRef:
      name: tenancy-settings
      key: username-prefix
- name: PLATFORM_ADMIN_USERS
  valueFrom:
    configMapKeyRef:
      name: tenancy-settings
      key: platform-admin-users
{{- end }}

{{/*
tenancy.mailEnv gives a container the SMTP URL of mail.smtpSecret, when one is named.
*/}}
{{- define "tenancy.mailEnv" -}}
{{- with .Values.mail.smtpSecret.name }}
# smtp:// or smtps:// with the credentials: both binaries send mail only with it.
- name: TENANCY_SMTP_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.mail.smtpSecret.key }}
{{- end }}
{{- end }}

{{/*
tenancy.scheduling renders a pod's imagePullSecrets, priorityClassName, nodeSelector, tolerations,
affinity and topologySpreadConstraints. It takes a dict: root and values (the component's values).
*/}}
{{- define "tenancy.scheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* tenancy.podSecurityContext: the restricted Pod Security Standard, uid/gid 65532. */}}
{{- define "tenancy.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* tenancy.containerSecurityContext: neither binary writes files or needs a capability. */}}
{{- define "tenancy.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* tenancy.certManager is true when cert-manager issues the webhook certificate. */}}
{{- define "tenancy.certManager" -}}
{{- if eq .Values.webhookCertificates.mode "certManager" }}true{{ end }}
{{- end }}
