#!/usr/bin/env bash
# make image: build the step image (Containerfile) with mcbuild itself, push it
# to $IMAGE and check what was pushed.
#
# There is no docker.io here, so the builder base is made locally first,
# pushed to a loopback registry and passed as BUILDER_IMAGE: Debian bookworm
# minbase (debootstrap) + gcc, libc6-dev, ca-certificates + the host's Go, what
# golang:1.26-bookworm offers. The runtime base is scratch (the default). The
# builder stage installs Debian packages with apt (the archive is reachable).
# The builder stage downloads modules through GOPROXY, pointed at a loopback
# server of the host's module cache (falling back to the host's GOPROXY), so a
# run does not fetch ~500 MB again.
#
# Env: MCBUILD, REGISTRY_BIN (required); VERSION (mcbuild --version); REF_FILE (where
# to write the pushed REPO:TAG@DIGEST); IMAGE (default
# 127.0.0.1:5050/mcbuild/mcbuild:dev); GO (default go); DEBIAN_MIRROR (default:
# apt's); STORAGE_DRIVER (default overlay); MCBUILD_FLAGS (more global flags
# for every mcbuild call, e.g. `--authfile FILE` or `--cert-dir DIR`). For a loopback IMAGE whose registry
# is not running, a distribution registry is started there for the run, its
# data kept in .cache/image/registry (serve it again with
# `bin/tools/registry serve .cache/image/registry.yml`), and the image's
# repository path and digest are written to .cache/image/step-image.ref (what
# test/tekton's runtime tests run); port 0 (IMAGE=127.0.0.1:0/...) picks a
# free one. For any other IMAGE the bases go to a temporary loopback registry
# and the push verifies TLS.
#
# IMAGE_REUSE=1 (`make step-image`): when step-image.ref names an image in
# .cache/image/registry built from the same inputs (the files the
# Containerfile copies, the Containerfile, this script, the Go version), keep
# it and build nothing.
set -euo pipefail
: "${REGISTRY_BIN:?}" "${MCBUILD:?}"
IMAGE=${IMAGE:-127.0.0.1:5050/mcbuild/mcbuild:dev}
GO=${GO:-go}
STORAGE_DRIVER=${STORAGE_DRIVER:-overlay}
read -r -a extra <<< "${MCBUILD_FLAGS:-}"
cd "$(dirname "$0")/.."
root=$PWD
cache=$root/.cache/image
mkdir -p "$cache"
work=$(mktemp -d /var/tmp/mcbuild-image.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
t0=$SECONDS
phase() { printf '== [%4ds] %s\n' $((SECONDS - t0)) "$*"; }

answers() { curl -fsS -o /dev/null "http://$1/v2/" 2>/dev/null; }
free_port() {
  local port=$1
  while (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}
# start_registry ADDR DIR CONFIG: distribution v3 on ADDR, data in DIR.
start_registry() {
  cat > "$3" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $2}, delete: {enabled: true}}
http: {addr: $1}
YML
  "$REGISTRY_BIN" serve "$3" > "$work/registry-${1##*:}.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do answers "$1" && return 0; sleep 0.2; done
  echo "registry on $1 did not start:" >&2; cat "$work/registry-${1##*:}.log" >&2; return 1
}

# --- reuse -------------------------------------------------------------------
# A hash of what the step image is built from (.containerignore's exclusions
# left out, as the build context leaves them out).
inputs_hash() {
  {
    "$GO" env GOVERSION
    find Containerfile .containerignore go.mod go.sum cmd pkg internal image hack/image.sh -type f \
      ! -name '*_test.go' ! -path '*/testdata/*' -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}
inputs=$(inputs_hash)
if [ "${IMAGE_REUSE:-}" = 1 ] && [ -s "$cache/step-image.ref" ] && [ "$(cat "$cache/step-image.inputs" 2>/dev/null)" = "$inputs" ]; then
  stored=$(cat "$cache/step-image.ref")
  repo=${stored%%[:@]*}
  digest=${stored##*@sha256:}
  if [ -e "$cache/registry/docker/registry/v2/repositories/$repo/_manifests/revisions/sha256/$digest/link" ]; then
    phase "step image: $stored in .cache/image/registry is built from these inputs; nothing to do"
    exit 0
  fi
fi

# --- registries ------------------------------------------------------------
case $IMAGE in
  127.0.0.1:0/* | localhost:0/*) IMAGE=127.0.0.1:$(free_port 5300)/${IMAGE#*/} ;;
esac
host=${IMAGE%%/*}
case $host in
  127.0.0.1:*|localhost:*) loopback=true ;;
  *) loopback=false ;;
esac
if $loopback; then
  if answers "$host"; then
    phase "registry: using the one already answering on $host"
  else
    start_registry "$host" "$cache/registry" "$cache/registry.yml"
    phase "registry: started distribution on $host (data in .cache/image/registry)"
  fi
  bases=$host
  tls=(--tls-verify=false)
else
  bases=127.0.0.1:$(free_port 5100)
  start_registry "$bases" "$work/registry" "$work/registry.yml"
  phase "registry for the bases: $bases; $IMAGE is pushed with TLS verification"
  # Pull the bases over plain HTTP while the push to $IMAGE verifies TLS.
  printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$bases" > "$work/registries.conf"
  export CONTAINERS_REGISTRIES_CONF=$work/registries.conf
  tls=()
fi
store=("${extra[@]}" --storage-driver "$STORAGE_DRIVER" --root "$work/storage" --runroot "$work/run")
builder_ref=$bases/mcbuild-base/golang:1.26-bookworm

# --- builder base ------------------------------------------------------------
# Debian's mirror as apt knows it (deb822 .sources or a one-line sources.list).
apt_mirror() {
  local f files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}
       /^deb[ \t]/ {for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {print $i; break}}' \
    "${files[@]}" | grep -E '/debian/?$' | head -n1
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror || true)}
mirror=${mirror:-http://deb.debian.org/debian}
bctx=$cache/builder
if [ ! -e "$bctx/debootstrap.done" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  phase "builder base: debootstrap bookworm minbase + gcc libc6-dev ca-certificates from $mirror"
  rm -rf "$bctx" && mkdir -p "$bctx"
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$bctx/rootfs" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # Device nodes come from the runtime; package caches are dead weight.
  find "$bctx/rootfs/dev" -mindepth 1 -delete
  rm -rf "$bctx/rootfs/var/cache/apt/archives/"*.deb "$bctx/rootfs/var/lib/apt/lists/"*
  touch "$bctx/debootstrap.done"
fi
goroot=$("$GO" env GOROOT)
goversion=$("$goroot/bin/go" env GOVERSION)
if [ "$(cat "$bctx/go.version" 2>/dev/null)" != "$goversion" ]; then
  phase "builder base: $goversion from $goroot to /usr/local/go"
  rm -rf "$bctx/rootfs/usr/local/go" && cp -a "$goroot" "$bctx/rootfs/usr/local/go"
  echo "$goversion" > "$bctx/go.version"
fi
cat > "$bctx/Containerfile" <<'EOF'
# Stand-in for docker.io/library/golang:1.26-bookworm (hack/image.sh).
FROM scratch
COPY rootfs/ /
ENV GOPATH=/go GOTOOLCHAIN=local \
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
CMD ["bash"]
EOF
phase "builder base: build and push $builder_ref"
"$MCBUILD" build "${store[@]}" --tls-verify=false --image "$builder_ref" --context "$bctx" \
  --compression-formats gzip --source-date-epoch 0 > "$work/builder-base.log" 2>&1 \
  || { tail -30 "$work/builder-base.log" >&2; exit 1; }

# --- the step image ----------------------------------------------------------
# A loopback GOPROXY serving the host's module cache (RUN shares the host's
# network namespace); anything missing falls through to the host's GOPROXY.
modcache=$("$GO" env GOMODCACHE)/cache/download
gport=$(free_port 5200)
busybox httpd -f -p "127.0.0.1:$gport" -h "$modcache" &
pids+=($!)
goproxy=http://127.0.0.1:$gport
upstream=$("$GO" env GOPROXY)
case $upstream in ""|off) ;; *) goproxy=$goproxy,$upstream ;; esac
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
mkdir -p "$work/results"
phase "step image: mcbuild build --image $IMAGE (GOPROXY=$goproxy, SOURCE_DATE_EPOCH=$epoch)"
"$MCBUILD" build "${store[@]}" "${tls[@]}" --image "$IMAGE" --context . --file Containerfile \
  --build-arg "BUILDER_IMAGE=$builder_ref" \
  --build-arg "GOPROXY=$goproxy" --build-arg "VERSION=${VERSION:-dev}" --source-date-epoch "$epoch" --results-dir "$work/results"
ref=$(cat "$work/results/IMAGE_REF")

# --- checks --------------------------------------------------------------------
phase "check: the index lists gzip, then zstd:chunked, for the host platform"
platform=linux/$("$GO" env GOARCH)
"$MCBUILD" inspect "${extra[@]}" "${tls[@]}" "$ref" | tee "$work/inspect.txt"
got=$(awk -v p="$platform" '$1 == p {print $2}' "$work/inspect.txt" | paste -sd' ')
[ "$got" = "gzip zstd:chunked" ] || { echo "index entries for $platform: '$got', want 'gzip zstd:chunked'" >&2; exit 1; }
"$MCBUILD" subjects verify "${extra[@]}" "${tls[@]}" "$ref"

phase "check: FROM the step image, RUN mcbuild and look at its configuration"
# The smoke image goes to the loopback registry (plain HTTP); the step image
# is pulled by digest, so its content is checked whatever --tls-verify says.
mkdir -p "$work/smoke"
cat > "$work/smoke/Containerfile" <<'EOF'
ARG STEP_IMAGE
FROM ${STEP_IMAGE}
RUN set -e; mcbuild --help >/dev/null; mcbuild build --help | grep -q -- --compression-formats; \
    for f in /etc/containers/policy.json /etc/containers/registries.conf /etc/containers/storage.conf \
             /etc/ssl/certs/ca-certificates.crt /etc/subuid /etc/subgid; do test -s "$f"; done; \
    test "$(stat -c %a /tmp)" = 1777; test "$(stat -c %a /var/tmp)" = 1777; \
    unshare --version | grep -q util-linux; newuidmap 2>&1 | grep -q usage; newgidmap 2>&1 | grep -q usage; \
    echo "step image OK: $(command -v mcbuild) $(mcbuild --version), $(wc -c < /usr/local/bin/mcbuild) bytes; $(unshare --version); shell $(readlink /bin/sh)"
EOF
"$MCBUILD" build "${store[@]}" --tls-verify=false --image "$bases/mcbuild-smoke/check:latest" \
  --context "$work/smoke" --build-arg "STEP_IMAGE=$ref" --compression-formats gzip > "$work/smoke.log" 2>&1 \
  || { tail -30 "$work/smoke.log" >&2; echo "smoke build failed" >&2; exit 1; }
grep 'step image OK' "$work/smoke.log"
if $loopback; then
  echo "${ref#*/}" > "$cache/step-image.ref"
  echo "$inputs" > "$cache/step-image.inputs"
fi
phase "done: $ref"
# For hack/release.sh: the pushed index as REPO:TAG@DIGEST.
[ -z "${REF_FILE:-}" ] || printf '%s' "$ref" > "$REF_FILE"
