#!/usr/bin/env bash
# The edge's load, read on the host and sent to CloudWatch with PutMetricData: run once a minute
# on every proxy and backend (a systemd timer on the VMs; the local stack runs it too). No server
# to scrape: each host reads its own figures on loopback and sends them.
#
#   edge-metrics.sh proxy     NGINX's stub_status and live config, its error log, the health agent
#   edge-metrics.sh backend   the backend app's Prometheus metrics on loopback
#
# Proxy metrics: OpenSockets (client connections with a request in progress, upgraded sockets
# among them: what limit_conn counts against the ceiling; the status request itself left out),
# MaxSockets (the ceiling the live config admits: limit_conn edge_sockets; on AWS there always is
# one), Accepted and Handled
# (connections since the last run), RefusedAtCeiling and RefusedPerAddress (connections limit_conn
# refused since the last run, by zone, from the error log), BackendsMarkedDown (the health agent's
# view) and HealthCheck (1 when NGINX answers /healthz on its own port, 0 when not).
# EdgeCertificateDaysLeft, ProxyClientCertificateDaysLeft and CaCertificateDaysLeft: whole days
# until the live release's certificates expire.
# Backend metrics: OpenSockets, MaxSockets (its cap; 0 for none), RefusedFull (upgrades it
# refused since the last run because it was full) and BackendCertificateDaysLeft.
#
# Counters are sent as the difference from the previous run, kept in $state; the first run sends
# none of them (it has nothing to subtract), nor after a restart that reset them.
#
# Environment:
#   WSS_EDGE_METRICS_NAMESPACE   CloudWatch namespace (required), e.g. WssEdge
#   WSS_EDGE_METRICS_DIMENSIONS  the dimension sets each metric is sent with, each Name=Value,…,
#                                separated by ';'. Unset (on the VMs): from WSS_EDGE_METRICS_STACK
#                                and the instance's ID (cloud-init's), the host's own and the
#                                role's across hosts, which the alarms watch:
#                                Stack=<stack>,Proxy=<id>;Stack=<stack>,Role=proxy
#   WSS_EDGE_CLOUDWATCH_ENDPOINT CloudWatch's API elsewhere (a stand-in); AWS's own by default
#   WSS_EDGE_ROOT                proxy: where releases live (default /etc/wss-edge)
#   WSS_EDGE_BACKEND_METRICS     backend: its metrics URL (default http://127.0.0.1:9464/metrics)
#   WSS_EDGE_BACKEND_CERTIFICATE backend: its server certificate, for BackendCertificateDaysLeft
#   WSS_EDGE_METRICS_STATE       where the previous run's counters are kept
#                                (default /var/lib/wss-edge/metrics-<role>)
#
# On a systemd host the deploy scripts have it run by a timer:
#   edge-metrics.sh install-timer ROLE ENV_FILE [NAME=VALUE…]   its service and timer, enabled
#   edge-metrics.sh remove-timer                               both gone
set -euo pipefail

case "${1:-}" in
install-timer)
    role=$2 env_file=$3
    shift 3
    self=$(readlink -f "${BASH_SOURCE[0]}")
    changed=0
    # install_unit NAME: the unit on standard input, in place if it changed.
    install_unit() {
        local next="/etc/systemd/system/$1.next"
        cat >"$next"
        if cmp -s "$next" "/etc/systemd/system/$1"; then rm -f "$next"; else mv -f "$next" "/etc/systemd/system/$1" && changed=1; fi
    }
    install_unit wss-edge-metrics.service <<UNIT
[Unit]
Description=wss-edge: the $role's metrics, sent to CloudWatch

[Service]
Type=oneshot
TimeoutStartSec=50
EnvironmentFile=$env_file
Environment=WSS_EDGE_METRICS_STATE=/var/lib/wss-edge/metrics-$role $*
ExecStart=/bin/bash $self $role
UNIT
    install_unit wss-edge-metrics.timer <<UNIT
[Unit]
Description=wss-edge: the $role's metrics, once a minute

[Timer]
OnCalendar=*-*-* *:*:00
AccuracySec=1s

[Install]
WantedBy=timers.target
UNIT
    if [ "$changed" -eq 1 ]; then systemctl daemon-reload; fi
    systemctl is-active -q wss-edge-metrics.timer || systemctl enable -q --now wss-edge-metrics.timer
    exit 0
    ;;
remove-timer)
    systemctl disable -q --now wss-edge-metrics.timer 2>/dev/null || true
    rm -f /etc/systemd/system/wss-edge-metrics.timer /etc/systemd/system/wss-edge-metrics.service
    systemctl daemon-reload
    exit 0
    ;;
esac

role=${1:-}
namespace=${WSS_EDGE_METRICS_NAMESPACE:?WSS_EDGE_METRICS_NAMESPACE must name the CloudWatch namespace}
state=${WSS_EDGE_METRICS_STATE:-/var/lib/wss-edge/metrics-$role}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "edge-metrics: $*" >&2; exit 1; }
case "$role" in proxy | backend) ;; *) fail "usage: edge-metrics.sh proxy|backend" ;; esac
if [[ -z "${WSS_EDGE_METRICS_DIMENSIONS:-}" ]]; then
    stack=${WSS_EDGE_METRICS_STACK:?WSS_EDGE_METRICS_STACK (or WSS_EDGE_METRICS_DIMENSIONS) must name the stack}
    instance=$(cat /var/lib/cloud/data/instance-id 2>/dev/null) || fail "no instance ID from cloud-init (/var/lib/cloud/data/instance-id)"
    host_dimension=Proxy
    [[ "$role" == backend ]] && host_dimension=Backend
    WSS_EDGE_METRICS_DIMENSIONS="Stack=$stack,$host_dimension=$instance;Stack=$stack,Role=$role"
fi
dimensions=$WSS_EDGE_METRICS_DIMENSIONS
[[ "$dimensions" =~ ^[A-Za-z0-9_-]+=[^,=\;]+(,[A-Za-z0-9_-]+=[^,=\;]+)*(\;[A-Za-z0-9_-]+=[^,=\;]+(,[A-Za-z0-9_-]+=[^,=\;]+)*)*$ ]] ||
    fail "WSS_EDGE_METRICS_DIMENSIONS must be Name=Value,… sets separated by ';', not '$dimensions'"
mkdir -p "$state"
# The minute the figures are of: runs a minute apart never share one, so a Sum across hosts counts each once.
timestamp=$(date -u +%Y-%m-%dT%H:%M:00Z)
# Counters' new values and the error log's offset, kept only once the send succeeded: a minute
# that could not be sent is counted in the next.
next_state="$work/state"
mkdir -p "$next_state"

# Metrics to send, one "Name Value Unit" per line.
metrics="$work/metrics"
: >"$metrics"
gauge() { echo "$1 $2 ${3:-Count}" >>"$metrics"; }
# days_left NAME FILE: whole days until the first certificate in FILE expires (negative, rounded down, once it has).
days_left() {
    local end left
    end=$(openssl x509 -enddate -noout -in "$2" 2>/dev/null | sed 's/^notAfter=//') || return 0
    [[ -n "$end" ]] || return 0
    left=$(($(date -u -d "$end" +%s) - $(date -u +%s)))
    if ((left >= 0)); then gauge "$1" $((left / 86400)); else gauge "$1" $((-((-left + 86399) / 86400))); fi
}
# counter NAME VALUE: the difference from the previous run's VALUE, if there was one and it did not go back.
counter() {
    local previous
    previous=$(cat "$state/$1" 2>/dev/null || true)
    if [[ "$previous" =~ ^[0-9]+$ ]] && (($2 >= previous)); then gauge "$1" $(($2 - previous)); fi
    echo "$2" >"$next_state/$1"
}

if [[ "$role" == proxy ]]; then
    root=${WSS_EDGE_ROOT:-/etc/wss-edge}
    config="$root/current/nginx.conf"
    [[ -r "$config" ]] || fail "no live release at $root/current"
    # The stub_status listener: the server whose only location is /stub_status, on loopback.
    status=$(awk '/listen 127\./ { sub(";", "", $2); listen = $2 } /location = \/stub_status/ { print listen; exit }' "$config")
    [[ -n "$status" ]] || fail "$config has no stub_status listener"
    # The ceiling (none where the host sets none: the local stack without maxSockets).
    ceiling=$(sed -n 's/^[[:space:]]*limit_conn edge_sockets \([0-9]\+\);.*/\1/p' "$config" | head -n 1)
    # Above what NGINX counts under one key, the ceiling is spread over 10^digits counters, by the
    # connection's last digits (map $connection $edge_socket_bucket): the limit is per counter.
    digits=$(awk '/map \$connection \$edge_socket_bucket/ { inmap = 1 } inmap && /~\(/ { print gsub(/\[0-9\]/, ""); exit }' "$config")
    [[ -z "$ceiling" ]] || ceiling=$((ceiling * 10 ** ${digits:-0}))
    error_log=$(sed -n 's/^error_log \([^ ;]*\).*/\1/p' "$config" | head -n 1)

    if ! curl -fsS --max-time 5 "http://$status/stub_status" >"$work/status"; then
        # NGINX is not running (or not answering): that alone is sent, for the alarm on it.
        echo "edge-metrics: NGINX's stub_status at $status does not answer; sending HealthCheck 0" >&2
        gauge HealthCheck 0
        skip_rest=1
    fi
fi
if [[ "$role" == proxy && -z "${skip_rest:-}" ]]; then
    read -r accepts handled _ < <(awk 'NR == 3 { print $1, $2, $3 }' "$work/status")
    read -r reading writing < <(awk '/^Reading:/ { print $2, $4 }' "$work/status")
    # Connections with a request in progress (an upgraded socket stays in one for its life), as
    # limit_conn counts them; idle keep-alive connections (Waiting) hold no slot. Less the status
    # request itself.
    gauge OpenSockets $((reading + writing - 1))
    if [[ -n "$ceiling" ]]; then gauge MaxSockets "$ceiling"; fi
    counter Accepted "$accepts"
    counter Handled "$handled"

    # limit_conn logs each refusal at error level: "limiting connections by zone "<zone>"".
    # Counted from where the previous run stopped; a rotated (smaller) log is counted from its start.
    size=$(stat -c %s "$error_log" 2>/dev/null || echo 0)
    offset=$(cat "$state/error-log-offset" 2>/dev/null || echo "")
    if [[ "$offset" =~ ^[0-9]+$ ]]; then
        ((offset <= size)) || offset=0
        # head may stop reading first (the log grows meanwhile): tail's broken pipe is no failure.
        tail -c +$((offset + 1)) "$error_log" 2>/dev/null | head -c $((size - offset)) >"$work/errors" || true
        gauge RefusedAtCeiling "$(grep -c 'limiting connections by zone "edge_sockets"' "$work/errors" || true)"
        gauge RefusedPerAddress "$(grep -c 'limiting connections by zone "per_client_address"' "$work/errors" || true)"
    fi
    echo "$size" >"$next_state/error-log-offset"

    days_left EdgeCertificateDaysLeft "$root/current/tls/edge.crt"
    days_left ProxyClientCertificateDaysLeft "$root/current/tls/proxy-client.crt"
    days_left CaCertificateDaysLeft "$root/current/tls/backend-ca.crt"

    down=0
    [[ -s "$root/health/down" ]] && down=$(grep -c . "$root/health/down" || true)
    gauge BackendsMarkedDown "$down"

    # The edge's own health check, as a client asks it: NGINX on its public port, by TLS, by the
    # edge's name (unknown names are refused at the handshake), with a PROXY header where the
    # listener expects one from the balancer.
    port=$(awk '$1 == "listen" && /ssl/ { n = split($2, a, ":"); sub(";", "", a[n]); print a[n]; exit }' "$config")
    # The first name a client can ask for (not a wildcard).
    name=$(awk '$1 == "server_name" { for (i = 2; i <= NF; i++) { n = $i; sub(";", "", n); if (n !~ /\*/ && n != "_") { print n; exit } } }' "$config")
    proxy_header=()
    grep -q '^[[:space:]]*listen .*ssl.*proxy_protocol' "$config" && proxy_header=(--haproxy-protocol)
    if [[ -n "$port" ]] && curl -fsSk --max-time 5 -o /dev/null "${proxy_header[@]}" \
        --connect-to "${name:-127.0.0.1}:$port:127.0.0.1:$port" "https://${name:-127.0.0.1}:$port/healthz"; then
        gauge HealthCheck 1
    else
        gauge HealthCheck 0
    fi
elif [[ "$role" == backend ]]; then
    url=${WSS_EDGE_BACKEND_METRICS:-http://127.0.0.1:9464/metrics}
    curl -fsS --max-time 5 "$url" >"$work/scrape" || fail "the backend's metrics at $url do not answer"
    value() { awk -v name="$1" '$1 == name { printf "%d\n", $2; found = 1 } END { if (!found) print 0 }' "$work/scrape"; }
    gauge OpenSockets "$(value wss_backend_open_sockets)"
    gauge MaxSockets "$(value wss_backend_max_sockets)"
    counter RefusedFull "$(value wss_backend_full_refusals_total)"
    if [[ -n "${WSS_EDGE_BACKEND_CERTIFICATE:-}" ]]; then days_left BackendCertificateDaysLeft "$WSS_EDGE_BACKEND_CERTIFICATE"; fi
fi

# One PutMetricData call: every metric once per dimension set, all at the run's minute.
awk -v sets="$dimensions" -v at="$timestamp" '
    BEGIN {
        count = split(sets, set, ";")
        for (s = 1; s <= count; s++) {
            n = split(set[s], pairs, ",")
            for (i = 1; i <= n; i++) {
                split(pairs[i], kv, "=")
                d[s] = d[s] (i > 1 ? "," : "") sprintf("{\"Name\":\"%s\",\"Value\":\"%s\"}", kv[1], kv[2])
            }
        }
        printf "["
    }
    {
        for (s = 1; s <= count; s++)
            printf "%s{\"MetricName\":\"%s\",\"Value\":%s,\"Unit\":\"%s\",\"Timestamp\":\"%s\",\"Dimensions\":[%s]}", (sent++ ? "," : ""), $1, $2, $3, at, d[s]
    }
    END { print "]" }
' "$metrics" >"$work/metric-data.json"

endpoint=()
[[ -n "${WSS_EDGE_CLOUDWATCH_ENDPOINT:-}" ]] && endpoint=(--endpoint-url "$WSS_EDGE_CLOUDWATCH_ENDPOINT")
# Bounded: a run that cannot reach CloudWatch gives up well before the next minute's.
aws "${endpoint[@]}" --cli-connect-timeout 5 --cli-read-timeout 10 \
    cloudwatch put-metric-data --namespace "$namespace" --metric-data "file://$work/metric-data.json"
cp -f "$next_state"/* "$state"/ 2>/dev/null || true
