#!/usr/bin/env bash
# make demo: start a loopback registry, build the busybox base and the hello
# example for two platforms, print the results, the index table and the
# subjects artifact, verify it, and stop the registry.
set -euo pipefail
: "${REGISTRY_BIN:?}" "${MCBUILD:?}"
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/mcbuild-demo.XXXXXX)
reg_pid=""
cleanup() {
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=5000
while (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YML
"$REGISTRY_BIN" serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
reg=127.0.0.1:$port
echo "== registry (distribution v3) on $reg, pid $reg_pid"

common=(--tls-verify=false --storage-driver vfs --root "$work/storage" --runroot "$work/run" --platform linux/amd64,linux/arm64)
echo "== 1. the busybox base image (gzip only; it is only a base)"
"$MCBUILD" build "${common[@]}" --image "$reg/demo/busybox:latest" --context examples/busybox-base --compression-formats gzip

echo "== 2. the example: RUN + COPY on that base, gzip + zstd:chunked per platform"
mkdir -p "$work/results"
"$MCBUILD" build "${common[@]}" --image "$reg/demo/hello:v1" --context examples/hello \
  --build-arg "BASE=$reg/demo/busybox:latest" --source-date-epoch 1700000000 --results-dir "$work/results"

echo "== Tekton results written to $work/results"
for f in "$work"/results/*; do printf '%-13s %s\n' "$(basename "$f")" "$(cat "$f")"; done
echo "== mcbuild inspect $reg/demo/hello:v1"
"$MCBUILD" inspect --tls-verify=false "$reg/demo/hello:v1"
echo "== mcbuild subjects show \$(SUBJECTS_REF)"
"$MCBUILD" subjects show --tls-verify=false "$(cat "$work/results/SUBJECTS_REF")"
echo "== mcbuild subjects verify $reg/demo/hello:v1"
"$MCBUILD" subjects verify --tls-verify=false "$reg/demo/hello:v1"
if command -v skopeo >/dev/null; then
  echo "== Debian's skopeo $(skopeo --version | awk '{print $3}') pulls linux/arm64 from the index: it takes the first entry, gzip"
  skopeo --override-os linux --override-arch arm64 copy -q --src-tls-verify=false "docker://$reg/demo/hello:v1" "dir:$work/pulled"
  echo "pulled manifest sha256:$(sha256sum "$work/pulled/manifest.json" | cut -d' ' -f1)"
  grep -o '"mediaType":"[^"]*layer[^"]*"' "$work/pulled/manifest.json" | sort | uniq -c
fi
echo "== demo done; stopping the registry"
