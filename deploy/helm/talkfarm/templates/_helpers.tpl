{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "talkfarm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name: <release>-talkfarm, or fullnameOverride. Kept to 40 characters because
KubeRay derives longer names (<cluster>-head-svc, <cluster>-<group>-worker-xxxxx) from it. */}}
{{- define "talkfarm.fullname" -}}
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

{{- define "talkfarm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "talkfarm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "talkfarm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "talkfarm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "talkfarm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The RayCluster's name; KubeRay names the head Service <cluster>-head-svc. */}}
{{- define "talkfarm.clusterName" -}}
{{- include "talkfarm.fullname" . -}}
{{- end -}}

{{- define "talkfarm.jobsAddress" -}}
{{- printf "http://%s-head-svc.%s.svc:%d" (include "talkfarm.clusterName" .) .Release.Namespace (int .Values.ray.head.dashboardPort) -}}
{{- end -}}

{{- define "talkfarm.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis.%s.svc:6379/0" (include "talkfarm.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- required "redis.externalUrl is required when redis.enabled is false" .Values.redis.externalUrl -}}
{{- end -}}
{{- end -}}

{{- define "talkfarm.tokenSecretName" -}}
{{- default (printf "%s-ray-token" (include "talkfarm.fullname" .)) .Values.ray.auth.secretName -}}
{{- end -}}

{{/* Environment shared by every Ray container and the submitter: token auth, S3, metrics folder. */}}
{{- define "talkfarm.commonEnv" -}}
{{- if .Values.ray.auth.enabled }}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "talkfarm.tokenSecretName" . }}
      key: auth_token
{{- end }}
{{- with .Values.s3.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
- name: TALKFARM_REDIS_URL
  value: {{ include "talkfarm.redisUrl" . | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "talkfarm.s3EnvFrom" -}}
{{- if .Values.s3.existingSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.s3.existingSecret }}
{{- end }}
{{- end -}}

{{/* The metrics exporter sidecar of a Ray pod: serves the pod's shared metrics folder. */}}
{{- define "talkfarm.metricsSidecar" -}}
- name: metrics-exporter
  image: {{ include "talkfarm.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["python", "-m", "monitoring.metrics", "serve", "--port", "{{ .Values.metrics.port }}", "--addr", "0.0.0.0"]
  env:
    - name: PROMETHEUS_MULTIPROC_DIR
      value: /tmp/talkfarm-metrics
  ports:
    - name: metrics
      containerPort: {{ .Values.metrics.port }}
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {cpu: 200m, memory: 256Mi}
  volumeMounts:
    - name: talkfarm-metrics
      mountPath: /tmp/talkfarm-metrics
{{- end -}}

{{/* A Ray container: image, env, S3 secret, resources and mounts. Arguments: dict root, name, resources. */}}
{{- define "talkfarm.rayContainer" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "talkfarm.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  env:
    {{- include "talkfarm.commonEnv" $root | nindent 4 }}
    - name: PROMETHEUS_MULTIPROC_DIR
      value: /tmp/talkfarm-metrics
  {{- include "talkfarm.s3EnvFrom" $root | nindent 2 }}
  {{- with .ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  volumeMounts:
    - name: talkfarm-metrics
      mountPath: /tmp/talkfarm-metrics
    - name: talkfarm-config
      mountPath: /etc/talkfarm
      readOnly: true
    - name: dshm
      mountPath: /dev/shm
{{- end -}}

{{- define "talkfarm.rayVolumes" -}}
- name: talkfarm-metrics
  emptyDir: {}
- name: talkfarm-config
  configMap:
    name: {{ include "talkfarm.fullname" . }}-config
- name: dshm
  emptyDir:
    medium: Memory
{{- end -}}
