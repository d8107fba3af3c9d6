#!/usr/bin/env bash
# Deploys one edge release (nginx.conf and its TLS files) and reloads NGINX without
# dropping open sockets. The same script runs on the AWS proxy VM and in the local stack.
#
#   deploy-edge-config.sh < bundle
#
# The bundle is one line per file, "<relative path> <base64 content>" (deploy/deployBundle.ts).
# Steps: stage the files, mark the backends the health agent found dead as `down`, `nginx -t`
# the staged config in place, swap the `current` symlink atomically, reload (or start, on the
# first deploy), and check that NGINX answers /healthz on its TLS listener. A release that
# fails `nginx -t` never becomes current, and one that NGINX does not take or answer with is
# switched back: the running config keeps serving and NGINX's own message is printed.
#
# It also installs itself and the release's backend health agent under $WSS_EDGE_ROOT/bin,
# and on a systemd host keeps the agent's service running the release's version.
#
# Environment:
#   WSS_EDGE_ROOT          where releases live (default /etc/wss-edge); NGINX runs
#                          `-c $WSS_EDGE_ROOT/current/nginx.conf`
#   NGINX_BIN              the nginx binary (default: nginx on PATH)
#   WSS_EDGE_SYSTEMD_UNIT  reload/start through this systemd unit instead of signals
#   WSS_EDGE_KEEP          releases to keep besides the current one (default 5)
#   WSS_EDGE_PLATFORM      the proxy platform this host runs (default: debian-<VERSION_ID> from
#                          /etc/os-release; the local stack names the platform whose NGINX it runs)
set -euo pipefail
umask 077

root=${WSS_EDGE_ROOT:-/etc/wss-edge}
nginx=${NGINX_BIN:-nginx}
# NGINX reads $NGINX as listening sockets inherited from an old binary (and then stays in
# the foreground); it must never leak in from the caller.
unset NGINX
unit=${WSS_EDGE_SYSTEMD_UNIT:-}
keep=${WSS_EDGE_KEEP:-5}
releases="$root/releases"

fail() { echo "deploy-edge-config: $*" >&2; exit 1; }

command -v "$nginx" >/dev/null || fail "nginx binary '$nginx' not found (set NGINX_BIN or install nginx)"
mkdir -p "$releases"

# One deploy at a time; a second one waits up to 60 s, then gives up.
exec 9>"$root/.deploy.lock"
flock -w 60 9 || fail "another deploy holds $root/.deploy.lock"

# Leftovers of an interrupted deploy are never current; clear them.
rm -rf "$releases"/.staging.*
stage=$(mktemp -d "$releases/.staging.XXXXXX")
trap 'rm -rf "$stage"' EXIT

count=0
while IFS=' ' read -r path content || [ -n "$path" ]; do
    [ -n "$path" ] || continue
    [[ "$path" =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ ]] || fail "bundle: unsafe path '$path'"
    [[ "/$path/" != */../* ]] || fail "bundle: unsafe path '$path'"
    mkdir -p "$stage/$(dirname "$path")"
    printf '%s' "$content" | base64 -d >"$stage/$path" || fail "bundle: '$path' is not valid base64"
    count=$((count + 1))
done
[ "$count" -gt 0 ] || fail "bundle: empty (expected nginx.conf and its TLS files on standard input)"
[ -f "$stage/nginx.conf" ] || fail "bundle: no nginx.conf"

# Backends the health agent (backend-health-agent.sh) holds to be dead stay `down` in every
# release; `down` keeps the other clients' hash slots. Marks of an older release are redone.
down_file="$root/health/down"
awk -v downfile="$down_file" '
    BEGIN { while ((getline target < downfile) > 0) down[target] = 1 }
    /^[[:space:]]*upstream[[:space:]]/ { upstream = 1 }
    upstream && $1 == "server" { sub(/ down;$/, ";"); if ($2 in down) sub(/;$/, " down;") }
    upstream && /^[[:space:]]*}/ { upstream = 0 }
    { print }
' "$stage/nginx.conf" >"$stage/.nginx.conf.marked" && mv -f "$stage/.nginx.conf.marked" "$stage/nginx.conf"

# A release names the proxy platform it was rendered for (proxyPlatform): its TLS groups and its
# socket ceiling are that platform's, and no other platform's proxy applies it. An old proxy that
# an instance refresh is about to replace keeps its live release (Debian 12's NGINX refuses Debian
# 13's hybrid group; Debian 13's OpenSSL keeps more per socket than Debian 12's ceiling allows
# for). A new proxy whose first boot finds the store's current release still the old platform's
# (the platform is changing) serves nothing yet: the update's deploy brings it its own release
# before the address or the balancer sends it anyone.
if [ -f "$stage/platform" ]; then
    wanted=$(cat "$stage/platform")
    here=${WSS_EDGE_PLATFORM:-$(. /etc/os-release && echo "debian-${VERSION_ID:-unknown}")}
    if [ "$here" != "$wanted" ]; then
        if [ -e "$root/current" ]; then
            echo "deploy-edge-config: this proxy runs $here and the release is for $wanted: it keeps its live release until it is replaced"
        else
            echo "deploy-edge-config: this proxy runs $here and the release is for $wanted: nothing is live here until a release for $here arrives"
        fi
        exit 0
    fi
fi

if ! check=$("$nginx" -t -q -c "$stage/nginx.conf" 2>&1); then
    echo "$check" >&2
    fail "nginx -t rejected the new config; the running config is unchanged"
fi

# Releases are named by content, so deploying the same files twice is a no-op swap.
id=$(cd "$stage" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
release="$releases/$id"
if [ -d "$release" ]; then
    rm -rf "$stage"
else
    mv "$stage" "$release"
fi
trap - EXIT

# Before the release goes live: the scripts the health agent runs, at a path that does not move
# with releases, and on a systemd host its service; a failure here leaves the running release as it was.
install_if_changed() {
    cmp -s "$1" "$2" && return 1
    install -D -m "${3:-0755}" "$1" "$2.next" && mv -f "$2.next" "$2"
}
install_if_changed "${BASH_SOURCE[0]}" "$root/bin/deploy-edge-config.sh" || true
agent_changed=0
if [ -f "$release/backend-health-agent.sh" ] && install_if_changed "$release/backend-health-agent.sh" "$root/bin/backend-health-agent.sh"; then
    agent_changed=1
fi
if [ ! -f "$release/backend-health-agent.sh" ]; then
    # Active health checks are off in this release: no agent, and no backend held down by one.
    if [ -n "$unit" ]; then systemctl disable -q --now wss-edge-backend-health 2>/dev/null || true; fi
    rm -f "$root/bin/backend-health-agent.sh" "$down_file"
elif [ -n "$unit" ]; then
    agent_unit=/etc/systemd/system/wss-edge-backend-health.service
    rendered_unit="$root/.backend-health.service"
    cat >"$rendered_unit" <<UNIT
[Unit]
Description=wss-edge: active health checks of the backends, marking dead ones down in NGINX
After=$unit.service

[Service]
Environment=WSS_EDGE_ROOT=$root WSS_EDGE_SYSTEMD_UNIT=$unit
ExecStart=/bin/bash $root/bin/backend-health-agent.sh
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
    if install_if_changed "$rendered_unit" "$agent_unit" 0644; then systemctl daemon-reload; agent_changed=1; fi
    rm -f "$rendered_unit"
    # Started by the first deploy, restarted when its script or unit changed; never by the agent's own redeploys.
    if [ "$agent_changed" -eq 1 ]; then systemctl enable -q wss-edge-backend-health && systemctl restart wss-edge-backend-health; fi
    systemctl is-active -q wss-edge-backend-health || systemctl enable -q --now wss-edge-backend-health
fi

# The metric sender (edge-metrics.sh), once a minute by a systemd timer, where the release says
# where to send (metrics.env: on AWS). A release without it stops the timer.
if [ -n "$unit" ]; then
    if [ -f "$release/metrics.env" ] && [ -f "$release/edge-metrics.sh" ]; then
        install_if_changed "$release/edge-metrics.sh" "$root/bin/edge-metrics.sh" || true
        install_if_changed "$release/metrics.env" "$root/metrics.env" 0644 || true
        /bin/bash "$root/bin/edge-metrics.sh" install-timer proxy "$root/metrics.env" "WSS_EDGE_ROOT=$root"
    elif [ -f "$root/bin/edge-metrics.sh" ]; then
        /bin/bash "$root/bin/edge-metrics.sh" remove-timer
        rm -f "$root/bin/edge-metrics.sh" "$root/metrics.env"
    fi
fi

# On a systemd host, an NGINX that dies (a crash, an OOM kill) is started again from the live
# release, as the agent is: Debian's nginx.service has no Restart=, and with one proxy nothing
# else would bring the edge back. A drop-in of its own, beside first boot's.
if [ -n "$unit" ]; then
    restart_dropin="$root/.nginx-restart.conf"
    printf '[Service]\nRestart=on-failure\nRestartSec=1s\n' >"$restart_dropin"
    if install_if_changed "$restart_dropin" "/etc/systemd/system/$unit.service.d/wss-edge-restart.conf" 0644; then systemctl daemon-reload; fi
    rm -f "$restart_dropin"
fi

previous=$(readlink "$root/current" 2>/dev/null || true)
swap_to() {
    ln -sfn "$1" "$root/.current.next"
    mv -Tf "$root/.current.next" "$root/current"
}
swap_to "releases/$id"

config="$root/current/nginx.conf"
pidfile=$(sed -n 's/^[[:space:]]*pid[[:space:]]\+\([^;]*\);.*/\1/p' "$config" | head -n 1)

master_pid() {
    [ -n "$pidfile" ] && [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"
}

# A reload is asynchronous: the master starts new workers, then tells the old ones to stop
# accepting. It has taken effect once every old worker is gone or "shutting down"; if the
# master rejects the new config, the old workers carry on and this times out.
wait_for_reload() {
    local old=$1 deadline=$((SECONDS + 15)) pid pending
    while [ "$SECONDS" -lt "$deadline" ]; do
        pending=0
        for pid in $old; do
            if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "shutting down"; then pending=1; fi
        done
        [ "$pending" -eq 0 ] && return 0
        sleep 0.1
    done
    return 1
}

reload_or_start() {
    local master old
    master=$(master_pid || true)
    if [ -n "$master" ]; then
        old=$(cat "/proc/$master/task/$master/children" 2>/dev/null || true)
        # Reload, never restart: old workers keep their sockets until worker_shutdown_timeout.
        if [ -n "$unit" ]; then systemctl reload "$unit"; else kill -HUP "$master"; fi
        wait_for_reload "$old" || { echo "NGINX kept its old workers: it did not apply the new config (see its error log)" >&2; return 1; }
    elif [ -n "$unit" ]; then
        systemctl start "$unit"
    else
        # The daemon must not keep our stdout/stderr open (callers wait for them to close),
        # nor the deploy lock on fd 9 (it would hold the lock for as long as it runs).
        local errors
        errors=$(mktemp)
        if ! "$nginx" -c "$config" </dev/null >/dev/null 2>"$errors" 9>&-; then
            cat "$errors" >&2
            rm -f "$errors"
            return 1
        fi
        rm -f "$errors"
    fi
}

# NGINX answers /healthz on its TLS listener (with a PROXY protocol header when the listener
# expects one). Loopback, so the certificate is not what is checked here; the TLS audit is.
answers_health_check() {
    local listen address port name header=() deadline=$((SECONDS + 10))
    listen=$(sed -n 's/^[[:space:]]*listen[[:space:]]\+\([^[:space:];]*\)[[:space:]]\+ssl.*/\1/p' "$config" | head -n 1)
    port=${listen##*:}
    address=${listen%:*}
    [ "$address" != "$listen" ] || address=127.0.0.1
    name=$(sed -n 's/^[[:space:]]*server_name[[:space:]]\+\([^[:space:];]*\).*/\1/p' "$config" | head -n 1)
    grep -q '[[:space:]]ssl proxy_protocol' "$config" && header=(--haproxy-protocol)
    while ! curl -fsS -o /dev/null --insecure --max-time 3 "${header[@]}" --connect-to "$name:$port:$address:$port" "https://$name:$port/healthz"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

if ! { reload_or_start && answers_health_check; }; then
    if [ -n "$previous" ]; then
        swap_to "$previous"
        # Make NGINX serve the previous release again if it half-took the new one.
        master=$(master_pid || true)
        [ -z "$master" ] || kill -HUP "$master" 2>/dev/null || true
        fail "NGINX did not take release $id; switched back to $previous"
    fi
    fail "NGINX did not start with release $id"
fi
echo "deploy-edge-config: release $id is live (previous: ${previous:-none})"

# Keep the newest $keep releases besides the current and the previous one.
{ ls -1t "$releases" | grep -v -x -e "$id" -e "$(basename "${previous:-none}")" || true; } |
    tail -n +"$((keep + 1))" | while read -r old; do rm -rf "${releases:?}/$old"; done
