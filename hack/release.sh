#!/usr/bin/env bash
# make release: publish the step image and pin every Task to it by digest.
#
#   hack/release.sh REGISTRY/REPO:TAG
#       builds the step image with mcbuild (hack/image.sh: Containerfile, gzip +
#       zstd:chunked, checked, a smoke build FROM it) and pushes it there;
#   hack/release.sh --prebuilt REGISTRY/REPO[:TAG]@sha256:HEX
#       takes an image pushed already (by hack/image.sh or a CI build).
#
# Then, for either: the index is checked (mcbuild inspect: a gzip entry first
# per platform; mcbuild subjects verify: its subjects artifact matches and
# every manifest is present), every `image:` of every Task under
# $TASKS_ROOT/tasks is rewritten to REGISTRY/REPO@sha256:HEX (the tag is
# dropped: the digest is what Tekton Chains records and what a release
# policy can trust), and the rewritten Tasks are validated with Tekton's own
# code (test/tekton TestStepImagesPinned and TestManifestsValidate, run on
# $TASKS_ROOT). Nothing is rewritten when a check fails.
#
# Until a release pins them, the checked-in Tasks carry the placeholder
# quay.io/mcbuild/mcbuild@sha256:000…0 (64 zeros), which the validation
# accepts only as itself and no registry serves.
#
# A loopback registry (127.0.0.1, localhost) is spoken to over plain HTTP;
# when hack/image.sh started it for the build it has stopped since, and its
# data (.cache/image) is served again for the checks.
#
# Env: MCBUILD (default bin/mcbuild), TASKS_ROOT (default the repository: a
# copy to try it out), MCBUILD_FLAGS (global flags for the checks, e.g.
# --tls-verify=false or --authfile FILE), GO (default go); for a build also
# REGISTRY_BIN, VERSION (see hack/image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD
MCBUILD=${MCBUILD:-$repo_root/bin/mcbuild}
TASKS_ROOT=${TASKS_ROOT:-$repo_root}
GO=${GO:-go}
read -r -a flags <<< "${MCBUILD_FLAGS:-}"
die() { echo "release: $*" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

case ${1:-} in
  --prebuilt)
    [ $# -eq 2 ] || die "usage: $0 --prebuilt REGISTRY/REPO[:TAG]@sha256:HEX"
    ref=$2 ;;
  -* | "")
    die "usage: $0 REGISTRY/REPO:TAG (build and push the step image) or $0 --prebuilt REF@sha256:HEX" ;;
  *)
    [ $# -eq 1 ] || die "one image, REGISTRY/REPO:TAG"
    case $1 in *@*) die "$1: give REGISTRY/REPO:TAG to build and push to (a digest is what the push gives)" ;; esac
    IMAGE=$1 REF_FILE=$work/ref MCBUILD=$MCBUILD GO=$GO hack/image.sh
    ref=$(cat "$work/ref") ;;
esac

# A loopback registry speaks plain HTTP; one hack/image.sh started for the
# build has stopped with it: serve its data again for the checks.
host=${ref%%/*}
case $host in
  127.0.0.1:* | localhost:*)
    flags+=(--tls-verify=false)
    if ! curl -fsS -o /dev/null "http://$host/v2/" 2>/dev/null && [ -f .cache/image/registry.yml ] && [ -n "${REGISTRY_BIN:-}" ]; then
      "$REGISTRY_BIN" serve .cache/image/registry.yml > "$work/registry.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 50); do curl -fsS -o /dev/null "http://$host/v2/" 2>/dev/null && break; sleep 0.2; done
    fi ;;
esac

# REGISTRY/REPO[:TAG]@sha256:HEX -> REGISTRY/REPO@sha256:HEX
digest=${ref##*@}
name=${ref%@*}
[ "$name" != "$ref" ] || die "$ref: no digest; give REGISTRY/REPO[:TAG]@sha256:HEX"
case $digest in
  sha256:*) hex=${digest#sha256:} ;;
  *) die "$ref: want a sha256 digest" ;;
esac
case $hex in
  *[!0-9a-f]*) die "$ref: the digest is not 64 lower-case hex digits" ;;
esac
[ ${#hex} -eq 64 ] || die "$ref: the digest is not 64 lower-case hex digits"
last=${name##*/}
case $last in *:*) name=${name%:*} ;; esac
pinned=$name@$digest

echo "release: checking $pinned"
"$MCBUILD" inspect "${flags[@]}" "$pinned" > "$work/inspect" || die "$pinned: cannot read the index"
cat "$work/inspect"
awk '
  NR > 1 && $1 ~ /\// { if (!($1 in first)) first[$1] = $2 }
  END { n = 0; for (p in first) { n++; if (first[p] != "gzip") { print "release: " p " lists " first[p] " first, want gzip"; bad = 1 } }
        if (n == 0) { print "release: no platform in the index"; bad = 1 }
        exit bad }' "$work/inspect" >&2 || die "$pinned is not a gzip-first mcbuild index"
"$MCBUILD" subjects verify "${flags[@]}" "$pinned" || die "$pinned: its subjects artifact does not match"

files=$(find "$TASKS_ROOT/tasks" -name '*.yaml' | sort)
[ -n "$files" ] || die "no Task under $TASKS_ROOT/tasks"
for f in $files; do
  grep -Eq '^[[:space:]]*(- )?image:' "$f" || die "$f has no image: line"
done
for f in $files; do
  sed -E -i "s#^([[:space:]]*(- )?image:).*#\1 $pinned#" "$f"
  echo "release: ${f#"$TASKS_ROOT"/}: image $pinned"
done

echo "release: validating the Tasks under $TASKS_ROOT with Tekton's code"
(cd "$repo_root/test/tekton" && MCBUILD_TASKS_ROOT=$TASKS_ROOT MCBUILD_RELEASE_IMAGE=$pinned \
  "$GO" test -count=1 -run '^(TestStepImagesPinned|TestManifestsValidate)$' .)
echo "release: done: $pinned"
