#!/usr/bin/env bash
# Builds and caches everything the single-node cluster runs: Kubernetes, etcd,
# Tekton Pipelines and Chains, all from the Go module proxy. Each binary is
# rebuilt only when its version changes (the stamp is in its directory name).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cache=${CLUSTER_CACHE:-$here/../../.cache/cluster}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off

log() { printf '%s build: %s\n' "$(date +%T)" "$*" >&2; }

moddir() { go mod download -json "$1@$2" | jq -r .Dir; }

# Kubernetes: the module zip leaves out staging/, so build against the
# published staging modules through an alternate go.mod (-modfile), without
# copying the source tree.
build_kube() {
  local out=$cache/kubernetes-$KUBE_VERSION
  [[ -x $out/kubelet && -x $out/kubectl && -x $out/kube-apiserver && -x $out/kube-controller-manager && -x $out/kube-scheduler ]] && return
  log "kubernetes $KUBE_VERSION (a few minutes cold)"
  local src; src=$(moddir k8s.io/kubernetes "$KUBE_VERSION")
  mkdir -p "$out.tmp"
  sed -E "s#^(\s*)(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+#\1\2 => \2 $KUBE_STAGING_VERSION#" "$src/go.mod" >"$out.tmp/go.mod"
  cp "$src/go.sum" "$out.tmp/go.sum"; chmod u+w "$out.tmp/go.sum"
  # The version Kubernetes' own build stamps: knative-based controllers
  # (Tekton, Chains) refuse an apiserver whose version does not parse.
  local v ldflags="" minor
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  done
  (cd "$src" && go build -modfile="$out.tmp/go.mod" -mod=mod -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
     ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubelet ./cmd/kubectl)
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# etcd: its server module carries replace directives, so a wrapper module
# whose main is etcdmain.Main builds it.
build_etcd() {
  local out=$cache/etcd-$ETCD_VERSION
  [[ -x $out/etcd ]] && return
  log "etcd $ETCD_VERSION"
  local w=$cache/src/etcd-$ETCD_VERSION
  rm -rf "$w"; mkdir -p "$w" "$out.tmp"
  cat >"$w/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$w" && go mod init clusteretcd >/dev/null 2>&1 && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 && go build -trimpath -o "$out.tmp/etcd" .)
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# Tekton and Chains: built inside their own module directories (their go.sum
# is complete), so the binaries are exactly the released sources.
build_tekton() {
  local out=$cache/tekton-$TEKTON_VERSION
  local cmds=(controller webhook entrypoint nop workingdirinit sidecarlogresults)
  local missing=0 c
  for c in "${cmds[@]}"; do [[ -x $out/$c ]] || missing=1; done
  [[ $missing == 0 ]] && return
  log "tekton pipelines $TEKTON_VERSION"
  local src; src=$(moddir github.com/tektoncd/pipeline "$TEKTON_VERSION")
  mkdir -p "$out.tmp"
  (cd "$src" && for c in "${cmds[@]}"; do go build -trimpath -o "$out.tmp/$c" "./cmd/$c"; done)
  mkdir -p "$out.tmp/config"; cp -r "$src/config/." "$out.tmp/config/"; chmod -R u+w "$out.tmp/config"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_chains() {
  local out=$cache/chains-$CHAINS_VERSION
  [[ -x $out/controller ]] && return
  log "tekton chains $CHAINS_VERSION"
  local src; src=$(moddir github.com/tektoncd/chains "$CHAINS_VERSION")
  mkdir -p "$out.tmp"
  (cd "$src" && go build -trimpath -o "$out.tmp/controller" ./cmd/controller)
  mkdir -p "$out.tmp/config"; cp -r "$src/config/." "$out.tmp/config/"; chmod -R u+w "$out.tmp/config"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_etcd
build_kube
build_tekton
build_chains
log "done: $cache"
