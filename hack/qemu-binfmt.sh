#!/usr/bin/env bash
# Makes foreign-architecture RUN steps work: registers qemu-user-static with
# binfmt_misc (flags F: the interpreter is opened now, so it also works inside
# a build's chroot). Needs root; idempotent.
set -euo pipefail
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for arch in "$@"; do
  case $arch in
    arm64) q=qemu-aarch64 ;; arm) q=qemu-arm ;; ppc64le) q=qemu-ppc64le ;; s390x) q=qemu-s390x ;;
    riscv64) q=qemu-riscv64 ;; amd64) q=qemu-x86_64 ;; *) echo "unknown arch $arch" >&2; exit 2 ;;
  esac
  [ "$arch" = "$(dpkg --print-architecture)" ] && continue
  update-binfmts --enable "$q" 2>/dev/null || true
  if ! grep -q '^enabled' "/proc/sys/fs/binfmt_misc/$q" 2>/dev/null; then
    echo "qemu binfmt for $arch ($q) is not enabled; is qemu-user-static installed?" >&2; exit 1
  fi
done
