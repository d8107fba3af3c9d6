#!/usr/bin/env bash
# Waits for the proxies' instance refresh that this `pulumi up` started, and reports it as it
# goes. The provider starts a refresh when the group's launch template version changes and does
# not wait for it (terraform-provider-aws, instance_refresh: "This resource does not wait for the
# instance refresh to complete"), so without this an `up` would pass while the refresh fails and
# rolls back. It prints each change of the refresh's state: its status, how many proxies it has
# replaced, and how many old proxies the balancer is still draining (their sockets are kept for
# the target groups' deregistration delay). It exits 0 once the refresh succeeded (or when the
# group has none), and 1 with AWS's own reason when it fails, is cancelled or rolls back.
#
# Environment:
#   WSS_EDGE_REGION          the stack's region
#   WSS_EDGE_TARGETS         asg:NAME, the proxies' group
#   WSS_EDGE_TARGET_GROUPS   the balancer's target group ARNs, separated by spaces
#   WSS_EDGE_REFRESH_TIMEOUT seconds the refresh may take in all (default 14400)
#   WSS_EDGE_POLL_SECONDS    seconds between looks (default 15)
#   WSS_EDGE_AUTOSCALING_ENDPOINT, WSS_EDGE_ELB_ENDPOINT
#                            endpoints to use instead of AWS's public ones (the CLI's --endpoint-url)
set -euo pipefail

fail() { echo "await-refresh: $*" >&2; exit 1; }
for variable in WSS_EDGE_REGION WSS_EDGE_TARGETS; do
    [ -n "${!variable:-}" ] || fail "$variable is not set"
done
case "$WSS_EDGE_TARGETS" in asg:?*) ;; *) fail "WSS_EDGE_TARGETS must be asg:NAME, not '$WSS_EDGE_TARGETS'" ;; esac
command -v aws >/dev/null || fail "the AWS CLI (aws) is not installed where pulumi runs; it reads the refresh's state with it"
group=${WSS_EDGE_TARGETS#asg:}
timeout=${WSS_EDGE_REFRESH_TIMEOUT:-14400}
poll=${WSS_EDGE_POLL_SECONDS:-15}
aws_() {
    local endpoint=""
    case "$1" in
        autoscaling) endpoint=${WSS_EDGE_AUTOSCALING_ENDPOINT:-} ;;
        elbv2) endpoint=${WSS_EDGE_ELB_ENDPOINT:-} ;;
    esac
    aws --region "$WSS_EDGE_REGION" ${endpoint:+--endpoint-url "$endpoint"} "$@"
}

draining() {
    local total=0 count target_group
    for target_group in ${WSS_EDGE_TARGET_GROUPS:-}; do
        count=$(aws_ elbv2 describe-target-health --target-group-arn "$target_group" \
            --query 'length(TargetHealthDescriptions[?TargetHealth.State==`draining`])' --output text)
        total=$((total + count))
    done
    echo "$total"
}

deadline=$((SECONDS + timeout))
last=""
while :; do
    # The newest refresh first: the one the group's update just started.
    state=$(aws_ autoscaling describe-instance-refreshes --auto-scaling-group-name "$group" --max-records 1 \
        --query 'InstanceRefreshes[0].[InstanceRefreshId, Status, PercentageComplete, InstancesToUpdate, StatusReason]' --output text)
    IFS=$'\t' read -r id status percent to_update reason <<<"$state"
    case "$status" in
        "" | None)
            echo "the group $group has no instance refresh"
            exit 0
            ;;
    esac
    line="instance refresh $id of $group: $status, ${percent:-0}% done, ${to_update:-?} proxies still to replace, $(draining) draining"
    if [ "$line" != "$last" ]; then
        echo "$line"
        last=$line
    fi
    case "$status" in
        Successful) exit 0 ;;
        Failed | Cancelled | RollbackSuccessful | RollbackFailed)
            fail "the instance refresh $id of $group ended $status: ${reason:-AWS gave no reason} (the group keeps the proxies it could not replace; see its activity history)"
            ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "the instance refresh $id of $group is still $status after ${timeout} s"
    sleep "$poll"
done
