#!/usr/bin/env bash
# Active health checks of the backends, beside NGINX on each proxy (NGINX OSS only notices a
# dead backend passively, one client's failed attempt at a time, and never a frozen one).
#
# Every interval, each backend in the live config's upstream gets GET /healthz over mutual TLS,
# with exactly the CA, client certificate and server name NGINX uses (read from the config).
# After $fall failures in a row a backend is marked `down` in the upstream, which keeps every
# other client's hash slot; after $rise successes it is restored. A change is applied by
# redeploying the live release through the deploy script (same validation, same reload that
# keeps open sockets, same rollback), so at most one reload per interval. Transitions are
# logged on standard output. The set of down backends is kept in $root/health/down, which every
# deploy applies, so a new release never brings a dead backend back.
#
# It never marks the last healthy backend down: with all of them failing, NGINX's own passive
# checks decide, as without this agent.
#
# Environment:
#   WSS_EDGE_ROOT              as for deploy-edge-config.sh (default /etc/wss-edge)
#   WSS_EDGE_HEALTH_INTERVAL   seconds between rounds (default 2)
#   WSS_EDGE_HEALTH_TIMEOUT    seconds one check may take, TLS handshake included (default 2)
#   WSS_EDGE_HEALTH_FALL       failures in a row that mark a backend down (default 2)
#   WSS_EDGE_HEALTH_RISE       successes in a row that bring it back (default 2)
#   NGINX_BIN, WSS_EDGE_SYSTEMD_UNIT  passed on to the deploy script
set -uo pipefail

root=${WSS_EDGE_ROOT:-/etc/wss-edge}
interval=${WSS_EDGE_HEALTH_INTERVAL:-2}
timeout=${WSS_EDGE_HEALTH_TIMEOUT:-2}
fall=${WSS_EDGE_HEALTH_FALL:-2}
rise=${WSS_EDGE_HEALTH_RISE:-2}
deploy="$root/bin/deploy-edge-config.sh"
down_file="$root/health/down"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 0' TERM INT

log() { echo "backend-health: $*"; }

# A directive's first argument in the live config (e.g. proxy_ssl_name).
directive() { sed -n "s/^[[:space:]]*$1[[:space:]]\+\([^;[:space:]]*\);.*/\1/p" "$2" | head -n 1; }

# ADDRESS:PORT of every server in the upstream, down or not.
upstream_servers() { awk '/^[[:space:]]*upstream[[:space:]]/ { u = 1; next } u && /^[[:space:]]*}/ { u = 0 } u && $1 == "server" { print $2 }' "$1"; }

# One check, run in the background: writes "ok" or the reason it failed to $work/<n>. The TLS
# settings ($name, $ca, $cert, $key) are read from the live config once per round.
check() {
    local target=$1 out=$2 host port
    port=${target##*:}
    host=${target%:*}
    if curl -fsS -o /dev/null --max-time "$timeout" --cacert "$ca" --cert "$cert" --key "$key" \
        --connect-to "$name:$port:$host:$port" "https://$name:$port/healthz" 2>"$out.err"; then
        echo ok >"$out"
    else
        tr '\n' ' ' <"$out.err" >"$out"
    fi
}

# The live release, as the deploy script reads a bundle: one "<path> <base64>" line per file.
live_bundle() {
    (cd "$release" && find . -type f | sed 's|^\./||' | sort | while read -r path; do
        printf '%s %s\n' "$path" "$(base64 -w0 <"$path")"
    done)
}

declare -A fails=() oks=() down=()
mkdir -p "$root/health"
if [ -s "$down_file" ]; then while read -r target; do [ -n "$target" ] && down[$target]=1; done <"$down_file"; fi
log "checking every ${interval}s (timeout ${timeout}s): down after $fall failures, back after $rise successes"

while :; do
    release=$(readlink -f "$root/current" 2>/dev/null || true)
    conf="$release/nginx.conf"
    if [ -z "$release" ] || [ ! -f "$conf" ]; then
        sleep "$interval"
        continue
    fi
    mapfile -t targets < <(upstream_servers "$conf")
    name=$(directive proxy_ssl_name "$conf")
    ca="$release/$(directive proxy_ssl_trusted_certificate "$conf")"
    cert="$release/$(directive proxy_ssl_certificate "$conf")"
    key="$release/$(directive proxy_ssl_certificate_key "$conf")"
    for i in "${!targets[@]}"; do check "${targets[$i]}" "$work/$i" & done
    wait

    changed=0
    up_count=0
    for target in "${targets[@]}"; do [ -n "${down[$target]:-}" ] || up_count=$((up_count + 1)); done
    for i in "${!targets[@]}"; do
        target=${targets[$i]}
        result=$(cat "$work/$i" 2>/dev/null || echo "no result")
        if [ "$result" = ok ]; then
            fails[$target]=0
            oks[$target]=$((${oks[$target]:-0} + 1))
            if [ -n "${down[$target]:-}" ] && [ "${oks[$target]}" -ge "$rise" ]; then
                unset "down[$target]"
                up_count=$((up_count + 1))
                changed=1
                log "$target is back after $rise good checks"
            fi
        else
            oks[$target]=0
            fails[$target]=$((${fails[$target]:-0} + 1))
            if [ -z "${down[$target]:-}" ] && [ "${fails[$target]}" -ge "$fall" ]; then
                if [ "$up_count" -le 1 ]; then
                    [ "${fails[$target]}" -eq "$fall" ] && log "$target fails ($result) but is the last one up: left to NGINX's passive checks"
                else
                    down[$target]=1
                    up_count=$((up_count - 1))
                    changed=1
                    log "$target marked down after $fall failed checks: $result"
                fi
            fi
        fi
    done

    if [ "$changed" -eq 1 ]; then
        previous=$(cat "$down_file" 2>/dev/null || true)
        printf '%s\n' "${!down[@]}" | grep -v '^$' | sort >"$down_file.next" || true
        mv -f "$down_file.next" "$down_file"
        if output=$(live_bundle | bash "$deploy" 2>&1); then
            log "applied: $(grep -o 'release [0-9a-f]* is live' <<<"$output")"
        else
            # The running config keeps serving; try again next round.
            printf '%s\n' "$previous" | grep -v '^$' >"$down_file" || true
            down=()
            while read -r target; do [ -n "$target" ] && down[$target]=1; done <"$down_file"
            log "could not apply the change, trying again: $output"
        fi
    fi
    sleep "$interval"
done
