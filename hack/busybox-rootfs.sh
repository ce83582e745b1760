#!/usr/bin/env bash
# Unpacks Debian's busybox-static for each given architecture into
# OUT/<arch>/ with /bin/sh and common applets as symlinks: a base image with a
# shell, without pulling from docker.io (there is no internet here).
# Usage: hack/busybox-rootfs.sh OUT ARCH [ARCH...]   (ARCH: amd64, arm64, ...)
set -euo pipefail
out=$1; shift
applets="sh ash cat cp echo env false grep head id ls mkdir mv printf rm sed sleep sort tail tee touch tr true uname wc"
host=$(dpkg --print-architecture)
work=$(mktemp -d); chmod 1777 "$work"; trap 'rm -rf "$work"' EXIT
for arch in "$@"; do
  dest=$out/$arch
  if [ -x "$dest/bin/busybox" ]; then continue; fi
  if [ "$arch" != "$host" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
    apt-get update -qq
  fi
  (cd "$work" && apt-get download -qq "busybox-static:$arch")
  rm -rf "$work/x" && dpkg -x "$work"/busybox-static_*_"$arch".deb "$work/x"
  mkdir -p "$dest/bin" "$dest/tmp" "$dest/etc"
  cp "$work/x/bin/busybox" "$dest/bin/busybox"
  for a in $applets; do ln -sf busybox "$dest/bin/$a"; done
  echo "root:x:0:0:root:/root:/bin/sh" > "$dest/etc/passwd"
  rm -f "$work"/*.deb
  echo "busybox rootfs for $arch in $dest"
done
