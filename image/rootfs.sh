#!/bin/sh
# Assembles the step image's root filesystem in OUT (the Containerfile's
# builder stage runs it; the final stage copies OUT to /). Everything comes
# from the builder's Debian, so the few glibc programs and the glibc they load
# always match each other:
#   /usr/local/bin/mcbuild            (static; built before this runs)
#   /bin/sh -> dash                    Tekton `script:` steps, as on Debian
#   busybox's applets in /bin          busybox-static: mkdir, cat, grep, ...
#   /usr/bin/unshare                   util-linux (>= 2.38: --map-users)
#   /usr/bin/newuidmap, newgidmap      uidmap: the task's user namespace
#   their shared libraries and loader  as ldd lists them
#   CA certificates, passwd/group, subuid/subgid (root:1:65536), nsswitch.conf
#   /tmp, /var/tmp (1777), /var/lib/containers, /run/containers
# Usage: image/rootfs.sh OUT
set -eu
out=${1:?usage: rootfs.sh OUT}

# copy_elf FILE: FILE and every shared object ldd says it loads, at the same paths.
copy_elf() {
  for f in "$1" $(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$out$(dirname "$f")"
    cp -L "$f" "$out$f"
  done
}

mkdir -p "$out/bin" "$out/usr/bin" "$out/etc/ssl/certs" "$out/root" \
  "$out/tmp" "$out/var/tmp" "$out/var/lib/containers" "$out/run/containers"
chmod 1777 "$out/tmp" "$out/var/tmp"
chmod 700 "$out/root"

for tool in unshare newuidmap newgidmap; do
  copy_elf "$(command -v "$tool")"
done
# dash, not busybox's ash, is /bin/sh: Debian's busybox runs its own applet
# for a command name before searching PATH, so `unshare` in a busybox script
# would be busybox's unshare, which lacks --map-users.
copy_elf /bin/dash
ln -sf dash "$out/bin/sh"
# Not setuid: the step runs as root, and nothing else should map ids.
chmod 755 "$out/usr/bin/newuidmap" "$out/usr/bin/newgidmap"

busybox=$(command -v busybox)
ldd "$busybox" >/dev/null 2>&1 && { echo "$busybox is not static (want Debian's busybox-static)" >&2; exit 1; }
cp "$busybox" "$out/bin/busybox"
for applet in $("$busybox" --list); do
  # Keep dash as sh and util-linux's unshare.
  [ "$applet" = busybox ] || [ -e "$out/bin/$applet" ] || [ -e "$out/usr/bin/$applet" ] ||
    ln -sf busybox "$out/bin/$applet"
done

cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > "$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' > "$out/etc/group"
# The range tasks/mcbuild maps into its user namespace; present already, so a
# read-only root filesystem works too.
echo 'root:1:65536' > "$out/etc/subuid"
echo 'root:1:65536' > "$out/etc/subgid"
# glibc's built-in files module: no NSS plugin is needed.
printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' > "$out/etc/nsswitch.conf"

# Every program must start inside OUT, not only on the builder.
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
found=$(chroot "$out" /bin/env -i PATH=$path /bin/sh -c 'unshare --version')
case $found in
  *util-linux*) ;;
  *) echo "sh inside $out runs the wrong unshare: $found" >&2; exit 1 ;;
esac
for tool in newuidmap newgidmap; do
  msg=$(chroot "$out" "/usr/bin/$tool" 2>&1 || true)
  case $msg in
    *usage*) ;;
    *) echo "$tool does not run inside $out: $msg" >&2; exit 1 ;;
  esac
done
