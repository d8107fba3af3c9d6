#!/usr/bin/env bash
# The health gate a backend passes before the edge is pointed at it and before the next backend
# is touched: its /healthz, asked from the proxy's side, over mutual TLS with the proxy's own
# client certificate, checked against the stack's CA and the name the proxy verifies.
#
#   backend-health-gate.sh NAME ADDRESS PORT SERVER_NAME TIMEOUT_SECONDS < bundle
#
# The bundle (deploy/deployBundle.ts format) holds ca.crt, client.crt and client.key. Passes when
# the backend answers 200 naming itself NAME; fails after TIMEOUT_SECONDS with the last error.
set -euo pipefail
umask 077
[ "$#" -eq 5 ] || { echo "usage: backend-health-gate.sh NAME ADDRESS PORT SERVER_NAME TIMEOUT_SECONDS < bundle" >&2; exit 2; }
name=$1 address=$2 port=$3 server_name=$4 timeout=$5

credentials=$(mktemp -d)
trap 'rm -rf "$credentials"' EXIT
while IFS=' ' read -r file content || [ -n "$file" ]; do
    case "$file" in ca.crt | client.crt | client.key) printf '%s' "$content" | base64 -d >"$credentials/$file" ;; esac
done

host=$address
[[ "$address" == *:* ]] && host="[$address]"
deadline=$((SECONDS + timeout))
last="no answer yet"
while :; do
    if answer=$(curl --silent --show-error --fail --max-time 5 \
        --cacert "$credentials/ca.crt" --cert "$credentials/client.crt" --key "$credentials/client.key" \
        --resolve "$server_name:$port:$address" "https://$server_name:$port/healthz" 2>&1); then
        if [[ "$answer" == *"\"backend\":\"$name\""* ]]; then
            echo "backend-health-gate: $name at $host:$port is healthy over mutual TLS"
            exit 0
        fi
        last="answered as someone else: $answer"
    else
        last=$answer
    fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 2
done
echo "backend-health-gate: $name at $host:$port failed its health check for ${timeout}s; last: $last" >&2
exit 1
