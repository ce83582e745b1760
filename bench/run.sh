#!/usr/bin/env bash
# make bench: fetch and build what the benchmark needs (nothing of it is
# committed: bench/bin and bench/.cache are ignored), then run bench/bin/mcbench.
#   - pigz and zstd (Debian) for the CLI floors; util-linux's unshare for arm d
#   - netavark + aardvark-dns unpacked into bench/bin/netavark (not installed):
#     the buildah CLI insists on them even for FROM scratch
#   - the buildah 1.45 CLI from the Go module proxy (bench/buildah pins it)
#   - bench/bin/mcbench (the harness; the root module, buildah's build tags)
#   - BENCH_WORKLOAD=base (issue 12): go-containerregistry's crane into
#     bench/bin/crane (pushes the foreign base) and the busybox root
#     filesystem (hack/busybox-rootfs.sh, as `make rootfs`) the base includes
# Without arm d in BENCH_ARMS, netavark and the buildah CLI are skipped.
# Environment: BENCH_RUNS (3), BENCH_WORKLOAD (ref, big, base), BENCH_BIG=1,
# BENCH_ARMS (a,b,f,c,d,e; base: r,n,g,d), BENCH_STORAGE_DRIVER (vfs),
# BENCH_WORK (/var/tmp); see bench/README.md.
set -euo pipefail
: "${REGISTRY_BIN:?}" "${MCBUILD:?}"
GO=${GO:-go}
cd "$(dirname "$0")/.."
bin=bench/bin
tags="containers_image_openpgp exclude_graphdriver_btrfs"
export CGO_ENABLED=1
mkdir -p "$bin"

missing=""
for p in pigz zstd util-linux; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

workload=${BENCH_WORKLOAD:-ref}
if [ "$workload" = base ]; then
  echo "building crane v0.22.1 ($bin/crane)"
  gobin="$PWD/$bin"
  (cd /tmp && GOFLAGS= GOBIN="$gobin" $GO install github.com/google/go-containerregistry/cmd/crane@v0.22.1)
  hack/busybox-rootfs.sh examples/busybox-base/rootfs "$(dpkg --print-architecture)"
fi

arm_d=1
case ",${BENCH_ARMS:-d}," in *,d,*) ;; *) arm_d=0 ;; esac

if [ "$arm_d" = 1 ] && [ ! -x "$bin/netavark/usr/lib/podman/netavark" ]; then
  echo "fetching netavark and aardvark-dns (apt-get download, unpacked into $bin/netavark)"
  tmp=$(mktemp -d) && chmod 755 "$tmp"  # apt-get download runs as _apt
  (cd "$tmp" && apt-get download -qq netavark aardvark-dns)
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$bin/netavark"; done
  rm -rf "$tmp"
fi

if [ "$arm_d" = 1 ]; then
  echo "building the buildah 1.45 CLI ($bin/buildah)"
  (cd bench/buildah && $GO build -tags "$tags" -o ../bin/buildah go.podman.io/buildah/cmd/buildah)
fi
echo "building the harness ($bin/mcbench)"
$GO build -tags "$tags" -o "$bin/mcbench" ./bench/cmd/mcbench

exec "$bin/mcbench" run -mcbuild "$MCBUILD" -registry "$REGISTRY_BIN" \
  -buildah "$bin/buildah" -helpers "$bin/netavark/usr/lib/podman" \
  -crane "$bin/crane" -goroot "$($GO env GOROOT)"
