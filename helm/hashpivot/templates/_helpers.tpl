{{/* Names, labels and the derived controller config shared by the templates. */}}

{{- define "hashpivot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hashpivot.fullname" -}}
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

{{/* Cluster-scoped names carry the namespace: one release per namespace may coexist. */}}
{{- define "hashpivot.clusterRoleName" -}}
{{- printf "%s-%s" .Release.Namespace (include "hashpivot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hashpivot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hashpivot.labels" -}}
helm.sh/chart: {{ include "hashpivot.chart" . }}
{{ include "hashpivot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hashpivot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hashpivot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of the controller pods (the miner and Ray pods carry other components). */}}
{{- define "hashpivot.controllerSelectorLabels" -}}
{{ include "hashpivot.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "hashpivot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hashpivot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hashpivot.minerName" -}}
{{- printf "%s-miner" (include "hashpivot.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "hashpivot.rayClusterName" -}}
{{- printf "%s-ray" (include "hashpivot.fullname" . | trunc 40 | trimSuffix "-") }}
{{- end }}

{{/* repository[:tag|@digest] of the controller image. */}}
{{- define "hashpivot.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "hashpivot.minerImage" -}}
{{- $img := .Values.miner.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else if $img.tag }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- else }}
{{- $img.repository }}
{{- end }}
{{- end }}

{{- define "hashpivot.rayImage" -}}
{{- $img := .Values.ray.kuberay.image }}
{{- if $img.repository }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- else }}
{{- include "hashpivot.image" . }}
{{- end }}
{{- end }}

{{/* The controller mode: shadow unless config.controller.mode says otherwise. */}}
{{- define "hashpivot.mode" -}}
{{- dig "controller" "mode" "shadow" (.Values.config | default dict) }}
{{- end }}

{{- define "hashpivot.metricsPort" -}}
{{- dig "controller" "metrics_port" 9108 (.Values.config | default dict) | int }}
{{- end }}

{{- define "hashpivot.journalDir" -}}
/var/lib/hashpivot/journal
{{- end }}

{{/* Address the controller joins Ray at; empty for embedded Ray. */}}
{{- define "hashpivot.rayAddress" -}}
{{- if eq .Values.ray.mode "external" }}
{{- .Values.ray.address }}
{{- else if eq .Values.ray.mode "kuberay" }}
{{- printf "ray://%s-head-svc.%s.svc:10001" (include "hashpivot.rayClusterName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Name of the miner DaemonSet the controller manages; empty when none. */}}
{{- define "hashpivot.minerDaemonSet" -}}
{{- if .Values.miner.enabled }}
{{- include "hashpivot.minerName" . }}
{{- else }}
{{- dig "kubernetes" "miner_daemonset" "" (.Values.config | default dict) | default "" }}
{{- end }}
{{- end }}

{{- define "hashpivot.leaseName" -}}
{{- dig "kubernetes" "lease_name" (printf "%s-leader" (include "hashpivot.fullname" .)) (.Values.config | default dict) }}
{{- end }}

{{/*
Fails with a message naming the value when values are inconsistent. The schema has already
checked keys and types; these are the rules that span several values.
*/}}
{{- define "hashpivot.validate" -}}
{{- $cfg := .Values.config | default dict }}
{{- $ns := dig "kubernetes" "namespace" "" $cfg }}
{{- if and $ns (ne $ns .Release.Namespace) }}
{{- fail (printf "config.kubernetes.namespace is %q but the release namespace is %q: leave it unset, the chart sets it to the release namespace (where the controller's Role grants lease access)" $ns .Release.Namespace) }}
{{- end }}
{{- if ne (dig "controller" "ray_address" "" $cfg | default "") "" }}
{{- fail "config.controller.ray_address is set by the chart: use ray.mode=external with ray.address instead" }}
{{- end }}
{{- if ne (dig "controller" "journal_dir" "" $cfg | default "") "" }}
{{- fail "config.controller.journal_dir is set by the chart (a volume at /var/lib/hashpivot/journal): use journal.existingClaim to keep the journal" }}
{{- end }}
{{- $market := dig "live_market" dict $cfg }}
{{- if and (kindIs "invalid" (dig "power_usd_mwh_fixed" nil $market)) (not (dig "power_sources" dict $market)) }}
{{- fail "config.live_market.power_usd_mwh_fixed (a tariff in USD/MWh) or config.live_market.power_sources must be set: without a power price every cycle holds every node" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if or (hasPrefix "HASHPIVOT_CONTROLLER" .name) (hasPrefix "HASHPIVOT_KUBERNETES" .name) }}
{{- fail (printf "extraEnv %s would override the chart's config.controller or config.kubernetes, which the chart derives the RBAC, probes and volumes from: set config.%s in the values instead" .name (lower (trimPrefix "HASHPIVOT_" .name | replace "__" "."))) }}
{{- end }}
{{- end }}
{{- range $key, $_ := .Values.podLabels }}
{{- if hasPrefix "app.kubernetes.io/" $key }}
{{- fail (printf "podLabels.%s: the app.kubernetes.io/ labels are the chart's (its selectors match them); choose another key" $key) }}
{{- end }}
{{- end }}
{{- if eq (include "hashpivot.metricsPort" .) "0" }}
{{- fail "config.controller.metrics_port must not be 0 in a chart install: the probes, the Service and the ServiceMonitor use it" }}
{{- end }}
{{- if and (eq .Values.ray.mode "external") (not .Values.ray.address) }}
{{- fail "ray.address is required when ray.mode=external (e.g. ray://raycluster-head-svc.ray:10001)" }}
{{- end }}
{{- if and (ne .Values.ray.mode "external") .Values.ray.address }}
{{- fail (printf "ray.address is only used with ray.mode=external, but ray.mode is %q" .Values.ray.mode) }}
{{- end }}
{{- if and (eq .Values.ray.mode "kuberay") (not (.Capabilities.APIVersions.Has "ray.io/v1/RayCluster")) }}
{{- fail "ray.mode=kuberay needs the RayCluster CRD (ray.io/v1): install the KubeRay operator first (with `helm template`, pass --api-versions ray.io/v1/RayCluster)" }}
{{- end }}
{{- if .Values.miner.enabled }}
{{- $given := dig "kubernetes" "miner_daemonset" "" $cfg | default "" }}
{{- if and $given (ne $given (include "hashpivot.minerName" .)) }}
{{- fail (printf "config.kubernetes.miner_daemonset is %q but miner.enabled=true renders the DaemonSet %q: leave config.kubernetes.miner_daemonset unset" $given (include "hashpivot.minerName" .)) }}
{{- end }}
{{- if not .Values.miner.image.repository }}
{{- fail "miner.image.repository is required when miner.enabled=true" }}
{{- end }}
{{- if not .Values.miner.wallet.existingSecret }}
{{- fail "miner.wallet.existingSecret is required when miner.enabled=true: the name of an existing Secret holding the payout wallet (the chart never creates it)" }}
{{- end }}
{{- end }}
{{- if and (eq (include "hashpivot.mode" .) "live") (not (include "hashpivot.minerDaemonSet" .)) }}
{{- fail "config.controller.mode=live needs a miner for the nodes it switches to mine: set miner.enabled=true (with miner.image.repository and miner.wallet.existingSecret), or name your own miner DaemonSet (in the release namespace) in config.kubernetes.miner_daemonset" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name is required when serviceAccount.create=false: the controller must not run as the namespace's default ServiceAccount" }}
{{- end }}
{{- end }}

{{/* config.yaml of the controller: the config block plus what the chart decides. */}}
{{- define "hashpivot.configYaml" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $ctl := get $cfg "controller" | default dict }}
{{- $k8s := get $cfg "kubernetes" | default dict }}
{{- $_ := set $k8s "namespace" .Release.Namespace }}
{{- $_ := set $k8s "lease_name" (include "hashpivot.leaseName" .) }}
{{- $ds := include "hashpivot.minerDaemonSet" . }}
{{- if $ds }}
{{- $_ := set $k8s "miner_daemonset" $ds }}
{{- else }}
{{- $_ := set $k8s "miner_daemonset" nil }}
{{- end }}
{{- $_ := set $ctl "mode" (include "hashpivot.mode" .) }}
{{- $_ := set $ctl "metrics_port" (include "hashpivot.metricsPort" . | int) }}
{{- $_ := set $ctl "journal_dir" (include "hashpivot.journalDir" .) }}
{{- $ray := include "hashpivot.rayAddress" . }}
{{- if $ray }}
{{- $_ := set $ctl "ray_address" $ray }}
{{- else }}
{{- $_ := set $ctl "ray_address" nil }}
{{- end }}
{{- $_ := set $cfg "controller" $ctl }}
{{- $_ := set $cfg "kubernetes" $k8s }}
{{- toYaml $cfg }}
{{- end }}

{{/* Pod spec of a Ray head or worker (KubeRay supplies the `ray start` command). */}}
{{- define "hashpivot.rayPodSpec" -}}
{{- $ := .ctx -}}
serviceAccountName: {{ include "hashpivot.serviceAccountName" $ }}
automountServiceAccountToken: true
enableServiceLinks: false
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
containers:
  - name: {{ .name }}
    image: {{ include "hashpivot.rayImage" $ | quote }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    env:
      - name: HOME
        value: /tmp
    {{- if .head }}
    ports:
      - name: gcs
        containerPort: 6379
      - name: dashboard
        containerPort: 8265
      - name: client
        containerPort: 10001
    {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- toYaml $.Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: dshm
        mountPath: /dev/shm
volumes:
  - name: tmp
    emptyDir: {}
  - name: dshm
    emptyDir:
      medium: Memory
{{- end }}
