#!/usr/bin/env bash
# Installs Tekton Pipelines and Chains on the cluster from their released
# config/ (the versions test/tekton pins), their ko:// image references
# replaced by the images images.sh pushed. Chains signs with a test key
# (x509.pem, made here) and stores signatures and attestations both on the
# runs (annotations) and next to every image on the cluster's registry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cache=${CLUSTER_CACHE:-$here/../../.cache/cluster}
S=${CLUSTER_STATE:-/var/tmp/mcbuild-cluster}
k() { "$here/cluster.sh" kubectl "$@"; }
img() { cat "$S/images/$1"; }
log() { printf '%s install: %s\n' "$(date +%T)" "$*" >&2; }

render_tekton() {
  local c=$cache/tekton-$TEKTON_VERSION/config f
  # Not installed: the remote resolvers (no network here: the test gives its
  # Pipeline cluster-local taskRefs), the events controller and the webhook's
  # autoscaler.
  for f in "$c"/100-namespace/*.yaml "$c"/200-*.yaml "$c"/201-*.yaml "$c"/300-crds/*.yaml \
    "$c"/clusterrole-aggregate-*.yaml "$c"/config-*.yaml "$c"/500-webhooks.yaml "$c"/controller.yaml "$c"/webhook.yaml; do
    echo "---"
    sed -e "s#ko://github.com/tektoncd/pipeline/cmd/controller#$(img tekton-controller)#" \
      -e "s#ko://github.com/tektoncd/pipeline/cmd/webhook#$(img tekton-webhook)#" \
      -e "s#ko://github.com/tektoncd/pipeline/cmd/entrypoint#$(img tekton-entrypoint)#" \
      -e "s#ko://github.com/tektoncd/pipeline/cmd/nop#$(img tekton-nop)#" \
      -e "s#ko://github.com/tektoncd/pipeline/cmd/sidecarlogresults#$(img tekton-sidecarlogresults)#" \
      -e "s#ko://github.com/tektoncd/pipeline/cmd/workingdirinit#$(img tekton-workingdirinit)#" \
      -e "s#\"-shell-image\", \"[^\"]*\"#\"-shell-image\", \"$(img shell)\"#" \
      "$f"
  done
}

render_chains() {
  local c=$cache/chains-$CHAINS_VERSION/config f
  for f in "$c"/*.yaml; do
    echo "---"
    sed -e "s#ko://github.com/tektoncd/chains/cmd/controller#$(img chains-controller)#" "$f"
  done
}

log "tekton pipelines $TEKTON_VERSION"
render_tekton >"$S/tekton.yaml"
k apply --server-side -f "$S/tekton.yaml" >/dev/null
# The Pipeline needs beta fields (matrix results, bundles); the single node
# needs no affinity assistant.
k -n tekton-pipelines patch configmap feature-flags --type merge \
  -p '{"data":{"enable-api-fields":"beta","coschedule":"disabled"}}' >/dev/null

log "tekton chains $CHAINS_VERSION"
render_chains >"$S/chains.yaml"
k apply --server-side -f "$S/chains.yaml" >/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$S/pki/chains-x509.pem" 2>/dev/null
openssl pkey -in "$S/pki/chains-x509.pem" -pubout -out "$S/pki/chains-x509.pub"
k -n tekton-chains create secret generic signing-secrets --from-file=x509.pem="$S/pki/chains-x509.pem" \
  --dry-run=client -o yaml | k replace -f - >/dev/null
k -n tekton-chains patch configmap chains-config --type merge -p '{"data":{
  "artifacts.taskrun.format":"in-toto","artifacts.taskrun.storage":"tekton,oci",
  "artifacts.pipelinerun.format":"in-toto","artifacts.pipelinerun.storage":"tekton,oci",
  "artifacts.oci.format":"simplesigning","artifacts.oci.storage":"oci",
  "artifacts.taskrun.signer":"x509","artifacts.pipelinerun.signer":"x509","artifacts.oci.signer":"x509",
  "storage.oci.repository.insecure":"true"}}' >/dev/null

for d in tekton-pipelines/tekton-pipelines-controller tekton-pipelines/tekton-pipelines-webhook tekton-chains/tekton-chains-controller; do
  k -n "${d%%/*}" rollout status "deployment/${d#*/}" --timeout 180s >/dev/null
done
# The webhook answers admission only once its certificate is in place.
deadline=$((SECONDS + 120))
until k create --dry-run=server -f - >/dev/null 2>&1 <<'EOF'
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: probe, namespace: default}
spec: {steps: [{name: s, image: busybox, script: "true"}]}
EOF
do
  ((SECONDS < deadline)) || { log "tekton's webhook did not answer"; exit 1; }
  sleep 2
done
log "ready"
