#!/usr/bin/env bash
# Puts every image the node runs on the cluster's registry and records each
# REPO@DIGEST in $CLUSTER_STATE/images/NAME: the pause process (containerd's
# sandbox image), Tekton's and Chains' binaries (as ko lays them out), a busybox
# shell image (Tekton's -shell-image), and the step image `make step-image`
# built (.cache/image), copied unchanged. Runs inside the cluster's network
# namespace (cluster.sh runs it there).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/env.sh"
cache=${CLUSTER_CACHE:-$root/.cache/cluster}
S=${CLUSTER_STATE:-/var/tmp/mcbuild-cluster}

out=$S/images
tools=$cache/tools # run.sh builds them: there is no module proxy in here
mkdir -p "$out"
ni=$tools/nodeimage

"$ni" bin "$REGISTRY/cluster/pause" "$tools/pause" >"$out/pause"
"$ni" dir "$REGISTRY/cluster/shell" "$root/examples/busybox-base/rootfs/amd64" >"$out/shell"
for c in controller webhook entrypoint nop workingdirinit sidecarlogresults; do
  "$ni" bin "$REGISTRY/tekton/$c" "$cache/tekton-$TEKTON_VERSION/$c" >"$out/tekton-$c"
done
"$ni" bin "$REGISTRY/chains/controller" "$cache/chains-$CHAINS_VERSION/controller" >"$out/chains-controller"

# The step image: serve make step-image's registry on this namespace's
# loopback for the copy.
step=$(cat "$root/.cache/image/step-image.ref")
cat >"$S/step-registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $root/.cache/image/registry}, maintenance: {readonly: {enabled: true}}}
http: {addr: 127.0.0.1:5300}
YML
"$root/bin/tools/registry" serve "$S/step-registry.yml" >"$S/logs/step-registry.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:5300/v2/ 2>/dev/null && break; sleep 0.2; done
"$ni" copy "127.0.0.1:5300/$step" "$REGISTRY/mcbuild/mcbuild:test" >"$out/step"
