#!/usr/bin/env bash
# Tells the backend app on this host the fleet every proxy now routes by, so that it moves the
# sockets whose key hashes to another backend (backend/server.mjs, rebalancing). Run by the
# stack's fleet document once the proxies' rollout is done.
#
#   backend-fleet.sh <fleet JSON, base64>
#
# The file is renamed into place (the app never reads half of one), in the folder the app's
# container mounts (deploy-backend.sh), and the app is sent SIGHUP. A host whose app is not
# running keeps the file: the app reads it when it starts.
#
# Environment:
#   WSS_BACKEND_ROOT   as for deploy-backend.sh (default /etc/wss-backend)
#   DOCKER             the docker binary (default: docker)
set -euo pipefail
umask 022

root=${WSS_BACKEND_ROOT:-/etc/wss-backend}
docker=${DOCKER:-docker}
container=wss-backend

fail() { echo "backend-fleet: $*" >&2; exit 1; }

[ "$#" -eq 1 ] || fail "usage: backend-fleet.sh <fleet JSON, base64>"
mkdir -p "$root/fleet"
next=$(mktemp "$root/fleet/.fleet.json.XXXXXX")
trap 'rm -f "$next"' EXIT
printf '%s' "$1" | base64 -d >"$next" 2>/dev/null || fail "the fleet is not valid base64"
grep -q '"servers"' "$next" || fail "the fleet names no servers: $(head -c 200 "$next")"
chmod 0644 "$next"
mv -f "$next" "$root/fleet/fleet.json"
if "$docker" kill --signal=HUP "$container" >/dev/null 2>&1; then
    echo "backend-fleet: the app was told the fleet: $(cat "$root/fleet/fleet.json")"
else
    echo "backend-fleet: the fleet is written; the app is not running and reads it when it starts"
fi
