#!/usr/bin/env bash
# make test-cluster: build (cached) what the cluster runs, bring the cluster
# up, install Tekton and Chains, run the scenarios (test/tekton/cluster, build
# tag `cluster`), and tear everything down, also after a failure or Ctrl-C.
# On failure, diagnostics (daemon and pod logs, events, runs as YAML) are
# copied to $CLUSTER_DIAG (default .cache/cluster/diag-<time>).
#
# Env: CLUSTER_RUN (go test -run pattern), CLUSTER_KEEP=1 (leave the cluster
# up after the tests, for a look with `test/cluster/cluster.sh kubectl ...`;
# take it down with `test/cluster/cluster.sh down`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CLUSTER_CACHE=${CLUSTER_CACHE:-$root/.cache/cluster}
export CLUSTER_STATE=${CLUSTER_STATE:-/var/tmp/mcbuild-cluster}
S=$CLUSTER_STATE
. "$here/env.sh"
t0=$SECONDS
phase() { printf '== [%4ds] %s\n' $((SECONDS - t0)) "$*"; }

phase "build (cached)"
"$here/build.sh"
# Our tools and the scenarios, compiled here: the cluster's network namespace
# has no module proxy.
mkdir -p "$CLUSTER_CACHE/tools"
(cd "$root/test/tekton" && CGO_ENABLED=0 go build -o "$CLUSTER_CACHE/tools/" ./cmd/nodeimage ./cmd/pause &&
  go test -c -tags cluster -o "$CLUSTER_CACHE/tools/cluster.test" ./cluster)

status=1
finish() {
  trap - EXIT INT TERM
  if [[ $status != 0 ]]; then
    "$here/cluster.sh" diag "${CLUSTER_DIAG:-$CLUSTER_CACHE/diag-$(date +%Y%m%d-%H%M%S)}" || true
  fi
  if [[ ${CLUSTER_KEEP:-} == 1 ]]; then
    phase "left up (CLUSTER_KEEP=1): test/cluster/cluster.sh down"
  else
    phase "down"
    "$here/cluster.sh" down || status=1
  fi
  phase "done: exit $status"
  exit "$status"
}
trap finish EXIT
trap 'status=130; exit 130' INT TERM

phase "cluster up"
"$here/cluster.sh" up
phase "install Tekton and Chains"
"$here/install.sh"
phase "scenarios"
cd "$root/test/tekton/cluster"
"$here/cluster.sh" run env KUBECONFIG="$S/pki/admin.kubeconfig" CLUSTER_STATE="$S" \
  CLUSTER_REGISTRY="$REGISTRY" CLUSTER_STEP_IMAGE="$(cat "$S/images/step")" \
  CLUSTER_SHELL_IMAGE="$(cat "$S/images/shell")" \
  "$CLUSTER_CACHE/tools/cluster.test" -test.v -test.timeout 40m ${CLUSTER_RUN:+-test.run "$CLUSTER_RUN"}
status=0
