#!/usr/bin/env bash
# Applies one release from the stack's release store on this VM: fetches it, checks that its
# content is what its id says, and runs the deploy script the release itself carries with the
# release's files on standard input. The same command runs at first boot (release `current`: a
# new, replaced or recovered VM serves on its own) and when `pulumi up` sends a release through
# Systems Manager. Nothing here listens or is reached from outside: the VM fetches.
#
#   apply-release.sh KIND LOCATION RELEASE
#
#   KIND      edge (the proxy: deploy-edge-config.sh) or backend (deploy-backend.sh)
#   LOCATION  the release's folder in the store, s3://BUCKET/PREFIX: releases are
#             PREFIX/releases/<id>, and PREFIX/current names the one new VMs apply
#   RELEASE   a release id (the SHA-256 of its bytes), or `current`
#
# Environment:
#   WSS_EDGE_REGION       the store's region
#   WSS_EDGE_S3_ENDPOINT  an S3-compatible endpoint to use instead of AWS's (the VM twin's store)
#   and what the deploy script reads (WSS_EDGE_ROOT, WSS_EDGE_SYSTEMD_UNIT, …), passed on.
set -euo pipefail
umask 077

fail() { echo "apply-release: $*" >&2; exit 1; }
[ "$#" -eq 3 ] || fail "usage: apply-release.sh edge|backend s3://BUCKET/PREFIX RELEASE|current"
kind=$1 location=${2%/} release=$3
case "$kind" in
    edge) script=deploy-edge-config.sh ;;
    backend) script=deploy-backend.sh ;;
    *) fail "kind '$kind' is neither edge nor backend" ;;
esac
[[ "$location" =~ ^s3://[a-z0-9][a-z0-9.-]*(/[A-Za-z0-9_.-]+)+$ ]] || fail "location '$location' is not s3://BUCKET/PREFIX"

s3() {
    aws ${WSS_EDGE_S3_ENDPOINT:+--endpoint-url "$WSS_EDGE_S3_ENDPOINT"} ${WSS_EDGE_REGION:+--region "$WSS_EDGE_REGION"} s3 "$@"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$release" = current ]; then
    if ! release=$(s3 cp --only-show-errors "$location/current" - 2>"$work/error"); then
        # No release yet: the stack's first `pulumi up` sends it once the backends pass their gates.
        if grep -qE '\(404\)|NoSuchKey|does not exist' "$work/error"; then
            echo "apply-release: no $kind release in $location yet; the deploy will bring it"
            exit 0
        fi
        cat "$work/error" >&2
        fail "cannot read $location/current"
    fi
    release=$(printf '%s' "$release" | tr -d '[:space:]')
fi
[[ "$release" =~ ^[0-9a-f]{64}$ ]] || fail "release '$release' is not a release id (64 hex digits)"

if ! s3 cp --only-show-errors "$location/releases/$release" "$work/bundle" 2>"$work/error"; then
    cat "$work/error" >&2
    fail "cannot fetch $location/releases/$release"
fi
actual=$(sha256sum <"$work/bundle" | cut -c1-64)
[ "$actual" = "$release" ] || fail "release $release: its content hashes to $actual; refusing it"

sed -n "s/^$script //p" "$work/bundle" | base64 -d >"$work/$script" 2>/dev/null || true
[ -s "$work/$script" ] || fail "release $release carries no $script"
grep -v "^$script " "$work/bundle" >"$work/files" || true
echo "apply-release: $kind release $release"
bash "$work/$script" <"$work/files"
