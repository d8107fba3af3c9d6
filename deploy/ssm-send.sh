#!/usr/bin/env bash
# Runs one Systems Manager document on the stack's VMs, ONE VM AT A TIME, and waits for each:
# what `pulumi up` runs (a local command) to deploy a release, pass a backend's health gate or
# roll the edge across its proxies. Each VM's output is printed as it finishes; the first
# failure stops the run and exits 1 with the VM's own error output, so `pulumi up` fails with
# the deploy script's message. Needs the AWS CLI and the credentials `pulumi up` has.
#
# Environment:
#   WSS_EDGE_REGION      the stack's region
#   WSS_EDGE_DOCUMENT    the document's name
#   WSS_EDGE_PARAMETERS  its parameters, as `aws ssm send-command --parameters` takes them (JSON)
#   WSS_EDGE_TARGETS     instance IDs separated by spaces, or `asg:NAME` for the instances of an
#                        Auto Scaling group, in service or still launching (read again at the
#                        end: a VM the group launched meanwhile is run on too, so no VM that
#                        booted before the pointer moved is left on the release before)
#   WSS_EDGE_POINTER     optional: s3://BUCKET/PREFIX/current, set to WSS_EDGE_RELEASE before the
#                        first VM (so a VM that boots meanwhile applies the new release) and set
#                        back to what it was if a VM fails
#   WSS_EDGE_RELEASE     the release id the pointer names
#   WSS_EDGE_WHAT        what is being run, for the messages (e.g. "the edge release 0a1b2c3d")
#   WSS_EDGE_ONLINE_TIMEOUT  seconds a VM may take to come online in Systems Manager (default 900:
#                        a new VM installs the agent at first boot)
#   WSS_EDGE_COMMAND_TIMEOUT seconds one VM's run may take (default 1200)
#   WSS_EDGE_POLL_SECONDS    seconds between looks at a VM's state (default 10 online, 5 running)
#   WSS_EDGE_SSM_ENDPOINT, WSS_EDGE_AUTOSCALING_ENDPOINT, WSS_EDGE_S3_ENDPOINT
#                        endpoints to use instead of AWS's public ones (the CLI's --endpoint-url):
#                        private endpoints, or the stand-ins the VM twin runs against
set -euo pipefail

fail() { echo "ssm-send: $*" >&2; exit 1; }
for variable in WSS_EDGE_REGION WSS_EDGE_DOCUMENT WSS_EDGE_PARAMETERS WSS_EDGE_TARGETS; do
    [ -n "${!variable:-}" ] || fail "$variable is not set"
done
command -v aws >/dev/null || fail "the AWS CLI (aws) is not installed where pulumi runs; the deploy sends its commands with it"
what=${WSS_EDGE_WHAT:-$WSS_EDGE_DOCUMENT}
online_timeout=${WSS_EDGE_ONLINE_TIMEOUT:-900}
command_timeout=${WSS_EDGE_COMMAND_TIMEOUT:-1200}
aws_() {
    local endpoint=""
    case "$1" in
        ssm) endpoint=${WSS_EDGE_SSM_ENDPOINT:-} ;;
        autoscaling) endpoint=${WSS_EDGE_AUTOSCALING_ENDPOINT:-} ;;
        s3) endpoint=${WSS_EDGE_S3_ENDPOINT:-} ;;
    esac
    aws --region "$WSS_EDGE_REGION" ${endpoint:+--endpoint-url "$endpoint"} "$@"
}

targets() {
    case "$WSS_EDGE_TARGETS" in
        asg:*)
            aws_ autoscaling describe-auto-scaling-groups --auto-scaling-group-names "${WSS_EDGE_TARGETS#asg:}" \
                --query 'AutoScalingGroups[0].Instances[?LifecycleState==`InService` || starts_with(LifecycleState, `Pending`)].InstanceId' \
                --output text | tr '\t' '\n' | grep -v -e '^None$' -e '^$' | sort
            ;;
        *) printf '%s\n' $WSS_EDGE_TARGETS ;;
    esac
}

in_service() {
    case "$WSS_EDGE_TARGETS" in
        asg:*) targets | grep -qx "$1" ;;
        *) true ;;
    esac
}

wait_online() {
    local id=$1 deadline=$((SECONDS + online_timeout)) status
    while :; do
        status=$(aws_ ssm describe-instance-information --filters "Key=InstanceIds,Values=$id" \
            --query 'InstanceInformationList[0].PingStatus' --output text 2>/dev/null || true)
        [ "$status" = Online ] && return 0
        in_service "$id" || return 1
        [ "$SECONDS" -lt "$deadline" ] || fail "$id is not online in Systems Manager after ${online_timeout}s (last: ${status:-unknown}); is its agent running, and does its role allow it?"
        sleep "${WSS_EDGE_POLL_SECONDS:-10}"
    done
}

previous_pointer=""
restore_pointer() {
    [ -n "${WSS_EDGE_POINTER:-}" ] || return 0
    if [ -n "$previous_pointer" ]; then
        printf '%s' "$previous_pointer" | aws_ s3 cp --only-show-errors - "$WSS_EDGE_POINTER" &&
            echo "ssm-send: $WSS_EDGE_POINTER is back at $previous_pointer" >&2
    else
        aws_ s3 rm --only-show-errors "$WSS_EDGE_POINTER" || true
    fi
}

run_on() {
    local id=$1 command_id deadline=$((SECONDS + command_timeout)) status=Pending
    wait_online "$id" || { echo "ssm-send: $id left its group; skipped"; return 0; }
    command_id=$(aws_ ssm send-command --instance-ids "$id" --document-name "$WSS_EDGE_DOCUMENT" \
        --parameters "$WSS_EDGE_PARAMETERS" --timeout-seconds "$command_timeout" \
        --comment "wss-edge: $what" --query Command.CommandId --output text) || fail "Systems Manager refused to send $what to $id"
    echo "ssm-send: $what on $id (command $command_id)"
    while :; do
        sleep "${WSS_EDGE_POLL_SECONDS:-5}"
        status=$(aws_ ssm get-command-invocation --command-id "$command_id" --instance-id "$id" \
            --query Status --output text 2>/dev/null || echo Pending)
        case "$status" in
            Pending | InProgress | Delayed) ;;
            *) break ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || break
    done
    aws_ ssm get-command-invocation --command-id "$command_id" --instance-id "$id" \
        --query StandardOutputContent --output text 2>/dev/null | sed "s/^/[$id] /" || true
    [ "$status" = Success ] && return 0
    if ! in_service "$id"; then
        echo "ssm-send: $id left its group while it ran ($status); skipped"
        return 0
    fi
    aws_ ssm get-command-invocation --command-id "$command_id" --instance-id "$id" \
        --query StandardErrorContent --output text 2>/dev/null | sed "s/^/[$id] /" >&2 || true
    case "$status" in
        Pending | InProgress | Delayed) fail "$what on $id did not finish within ${command_timeout}s" ;;
        *) fail "$what failed on $id ($status)" ;;
    esac
}

if [ -n "${WSS_EDGE_POINTER:-}" ]; then
    [[ "${WSS_EDGE_RELEASE:-}" =~ ^[0-9a-f]{64}$ ]] || fail "WSS_EDGE_RELEASE '${WSS_EDGE_RELEASE:-}' is not a release id"
    previous_pointer=$(aws_ s3 cp --only-show-errors "$WSS_EDGE_POINTER" - 2>/dev/null || true)
    printf '%s' "$WSS_EDGE_RELEASE" | aws_ s3 cp --only-show-errors - "$WSS_EDGE_POINTER"
    # Whatever stops the run before every VM took the release (a VM that fails, one that never
    # comes online, an error of the CLI) puts the pointer back: new VMs keep booting into the
    # release the others serve.
    trap 'status=$?; [ "$status" -eq 0 ] || restore_pointer; exit "$status"' EXIT
fi

done_ids=()
for _ in 1 2; do
    # The second round takes any VM the group launched while the first ran (before the pointer moved).
    for id in $(targets); do
        [[ " ${done_ids[*]} " == *" $id "* ]] && continue
        run_on "$id"
        done_ids+=("$id")
    done
    [[ "$WSS_EDGE_TARGETS" == asg:* ]] || break
done
[ "${#done_ids[@]}" -gt 0 ] || echo "ssm-send: no VM to run $what on; new ones apply the current release as they boot"
echo "ssm-send: $what done on ${#done_ids[@]} VM(s)"
