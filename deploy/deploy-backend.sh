#!/usr/bin/env bash
# Deploys one backend release on a backend host: its TLS files and the app container.
#
#   deploy-backend.sh < bundle
#
# The bundle has the edge release's format (deploy/deployBundle.ts): one line per file,
# "<relative path> <base64 content>". Files: tls/server.crt, tls/server.key, tls/client-ca.crt,
# and backend.env (IMAGE, REGISTRY, BACKEND_NAME, PORT, METRICS_PORT, and what the edge's settings
# tell the app: PING_INTERVAL_SECONDS, MAX_BUFFERED_BYTES, STUCK_SECONDS, CLOSE_SPREAD_SECONDS,
# MAX_SOCKETS, REBALANCE_SECONDS). The fleet file (backend-fleet.sh writes it) is mounted from
# $root/fleet, a folder, so that a file renamed into it is seen by the running app.
#
# What it does depends on what changed since the last release:
#   - only certificates: the files are swapped in and the app is sent SIGHUP; it loads them for
#     new connections and keeps every open socket (Node's setSecureContext);
#   - the image or the app's settings, or no app running: the new image is pulled first, then
#     the old container stops (it closes its sockets with 1001 over CLOSE_SPREAD_SECONDS of the
#     release it was started with, so docker waits that long and 10 s more before killing it) and
#     the new one starts; the script returns once it listens. The edge's health gate then checks
#     it from the proxy.
#
# Environment:
#   WSS_BACKEND_ROOT   where the TLS files and the current backend.env live (default /etc/wss-backend)
#   DOCKER             the docker binary (default: docker)
set -euo pipefail
umask 077

root=${WSS_BACKEND_ROOT:-/etc/wss-backend}
docker=${DOCKER:-docker}
container=wss-backend

fail() { echo "deploy-backend: $*" >&2; exit 1; }

mkdir -p "$root/tls" "$root/fleet"
exec 9>"$root/.deploy.lock"
flock -w 60 9 || fail "another deploy holds $root/.deploy.lock"

stage=$(mktemp -d "$root/.staging.XXXXXX")
trap 'rm -rf "$stage"' EXIT
unpack_bundle() {
    local path content files=0
    while IFS=' ' read -r path content || [ -n "$path" ]; do
        [ -n "$path" ] || continue
        [[ "$path" =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ && "/$path/" != */../* ]] || fail "bundle: unsafe path '$path'"
        mkdir -p "$stage/$(dirname "$path")"
        printf '%s' "$content" | base64 -d >"$stage/$path" || fail "bundle: '$path' is not valid base64"
        files=$((files + 1))
    done
    [ "$files" -gt 0 ] || fail "bundle: empty"
}
unpack_bundle
for file in tls/server.crt tls/server.key tls/client-ca.crt backend.env; do
    [ -s "$stage/$file" ] || fail "bundle: no $file"
done

setting() { sed -n "s/^$1=//p" "$stage/backend.env" | head -n 1; }
image=$(setting IMAGE)
registry=$(setting REGISTRY)
port=$(setting PORT)
[[ "$port" =~ ^[0-9]+$ ]] || fail "backend.env: PORT '$port' is not a port"
[ -n "$image" ] || fail "backend.env: no IMAGE"

# Seconds docker gives the app to stop: its close window, and 10 s to finish.
stop_timeout() {
    local spread
    spread=$(sed -n 's/^CLOSE_SPREAD_SECONDS=//p' "$1" 2>/dev/null | head -n 1)
    [[ "$spread" =~ ^[0-9]+$ ]] || spread=0
    echo $((spread + 10))
}

running() { [ "$("$docker" inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" = "true" ]; }

# Each file is renamed into place, so the app never reads half a certificate.
install_tls() {
    local file
    chown 1000:1000 "$stage"/tls/*
    chmod 0644 "$stage/tls/server.crt" "$stage/tls/client-ca.crt"
    chmod 0600 "$stage/tls/server.key"
    for file in server.crt client-ca.crt server.key; do mv -f "$stage/tls/$file" "$root/tls/$file"; done
}

# The metric sender, once a minute by a systemd timer, where the release says where to send
# (metrics.env: on AWS). Beside the app: installing it touches no socket.
if [ -f "$stage/metrics.env" ] && [ -f "$stage/edge-metrics.sh" ]; then
    install -D -m 0755 "$stage/edge-metrics.sh" "$root/bin/edge-metrics.sh"
    install -D -m 0644 "$stage/metrics.env" "$root/metrics.env"
    /bin/bash "$root/bin/edge-metrics.sh" install-timer backend "$root/metrics.env" \
        "WSS_EDGE_BACKEND_METRICS=http://127.0.0.1:$(setting METRICS_PORT)/metrics" "WSS_EDGE_BACKEND_CERTIFICATE=$root/tls/server.crt"
elif [ -f "$root/bin/edge-metrics.sh" ]; then
    /bin/bash "$root/bin/edge-metrics.sh" remove-timer
    rm -f "$root/bin/edge-metrics.sh" "$root/metrics.env"
fi

same_app() { [ -f "$root/backend.env" ] && [ "$(<"$stage/backend.env")" = "$(<"$root/backend.env")" ]; }
if running && same_app; then
    install_tls
    "$docker" kill --signal=HUP "$container" >/dev/null
    echo "deploy-backend: certificates reloaded by the running app; open sockets kept"
    exit 0
fi

if [ -n "$registry" ]; then
    # The instance role can take a few seconds to reach a new instance: retry for up to 2 minutes.
    region=$(echo "$registry" | cut -d. -f4)
    for attempt in $(seq 1 24); do
        if aws ecr get-login-password --region "$region" | "$docker" login --username AWS --password-stdin "$registry" >/dev/null 2>&1; then break; fi
        [ "$attempt" -lt 24 ] || fail "cannot log in to $registry (does the instance role allow ecr:GetAuthorizationToken?)"
        sleep 5
    done
fi
"$docker" pull -q "$image" >/dev/null || fail "cannot pull $image"

install_tls
if "$docker" inspect "$container" >/dev/null 2>&1; then
    # SIGTERM: the app closes its sockets with 1001, spread over its window, then exits.
    "$docker" stop -t "$(stop_timeout "$root/backend.env")" "$container" >/dev/null
    "$docker" rm "$container" >/dev/null
fi
env_args=()
for key in BACKEND_NAME PORT PING_INTERVAL_SECONDS MAX_BUFFERED_BYTES STUCK_SECONDS CLOSE_SPREAD_SECONDS MAX_SOCKETS REBALANCE_SECONDS METRICS_PORT; do env_args+=(-e "$key=$(setting "$key")"); done
metrics=$(setting METRICS_PORT)
[[ "$metrics" =~ ^[0-9]+$ ]] || fail "backend.env: METRICS_PORT '$metrics' is not a port"
# The metrics listen on all of the container's addresses; the security group admits the proxy's only.
"$docker" run -d --name "$container" --restart=always --stop-timeout "$(stop_timeout "$stage/backend.env")" \
    -p "$port:$port" -p "$metrics:$metrics" -e METRICS_HOST=0.0.0.0 "${env_args[@]}" \
    -v "$root/tls:/etc/wss-backend/tls:ro" -v "$root/fleet:/etc/wss-backend/fleet:ro" \
    -e FLEET_FILE=/etc/wss-backend/fleet/fleet.json "$image" >/dev/null
mv -f "$stage/backend.env" "$root/backend.env"

for _ in $(seq 1 60); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "deploy-backend: $image is listening on $port"
        exit 0
    fi
    running || break
    sleep 1
done
"$docker" logs --tail 20 "$container" >&2 || true
fail "the app did not start listening on $port"
