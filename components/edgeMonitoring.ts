import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface MonitoredInstance {
    /** What the alarm names it: "proxy", "backend-1"… */
    readonly role: string;
    readonly instance: aws.ec2.Instance;
}

/** A target group of the load balancer, whose unhealthy proxies raise an alarm. */
export interface MonitoredTargetGroup {
    readonly port: number;
    readonly targetGroup: aws.lb.TargetGroup;
    readonly loadBalancer: aws.lb.LoadBalancer;
}

export interface EdgeMonitoringArgs {
    readonly instances: readonly MonitoredInstance[];
    /** With the load-balanced shape: each target group, alarmed when any proxy in it is unhealthy. */
    readonly targetGroups?: readonly MonitoredTargetGroup[];
    /** With certificate acme: ACM's copy of the certificate, and how many days before expiry a missed renewal raises the alarm. */
    readonly acmeCertificate?: { readonly acmCertificateArn: pulumi.Input<string>; readonly alarmDaysLeft: pulumi.Input<number> };
    /**
     * What the proxies and backends admit, for the alarms on the sockets they send (deploy/edge-metrics.sh):
     * each proxy's ceiling (the plan's maxSockets), how many proxies, each backend's cap (0: none).
     */
    readonly capacity: {
        readonly proxyMaxSockets: pulumi.Input<number | undefined>;
        readonly proxyCount: number;
        readonly backendMaxSockets: pulumi.Input<number>;
    };
    /** Who is told when an alarm fires or clears; without it, the topic has no subscriber yet. */
    readonly alarmEmail?: string;
}

/**
 * What names the edge in the account: alarms, the dashboard, the metrics' Stack dimension. Each
 * edge's carry its name, but the stack's own ("edge"), whose were named before there could be two.
 */
export function edgeNamePrefix(name: string): string {
    return `${pulumi.getProject()}-${pulumi.getStack()}${name === "edge" ? "" : `-${name}`}`;
}

/** The CloudWatch namespace every proxy and backend sends its metrics to (deploy/edge-metrics.sh). */
export const metricsNamespace = "WssEdge";

/** The share of a ceiling at which the socket alarms fire: early enough to add capacity before 503s. */
export const alarmShare = 0.8;

/** An instance whose status checks fail this many minutes in a row raises its alarm. */
const failedMinutes = 2;

/**
 * Alarms and a dashboard for the edge's instances. Each instance has two alarms on EC2's status
 * checks, both sent to one SNS topic: the instance check (the VM itself: kernel, memory, disk,
 * network config) and the system check (the host under it), whose alarm also has EC2 recover the
 * instance onto healthy hardware, keeping its ID, addresses and disk, so the edge comes back without
 * a `pulumi up`. Missing data keeps the alarm as it was: EC2 reports no status checks for a
 * stopped instance, and a planned stop (a new instance type is applied by stopping and
 * starting the VM) is not a failure. The load-balanced proxies have no alarms of their own: the
 * group replaces a proxy the balancer finds unhealthy, and the target groups' alarms say so.
 * (EC2's recover action is valid on StatusCheckFailed_System alarms of instances on EBS:
 * docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/UsingAlarmActions.html#AddingRecoverActions.)
 */
export class EdgeMonitoring extends pulumi.ComponentResource {
    readonly topic: aws.sns.Topic;
    readonly alarms: aws.cloudwatch.MetricAlarm[];
    readonly dashboard: aws.cloudwatch.Dashboard;
    /** Where a person opens the dashboard in the AWS console. */
    readonly dashboardUrl: pulumi.Output<string>;

    constructor(name: string, args: EdgeMonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("wss-edge:monitoring:EdgeMonitoring", name, {}, opts);
        const region = aws.config.region ?? "us-east-1";
        const prefix = edgeNamePrefix(name);

        this.topic = new aws.sns.Topic(`${name}-alarms`, { displayName: `${prefix} alarms` }, { parent: this });
        if (args.alarmEmail) {
            new aws.sns.TopicSubscription(
                `${name}-alarms-email`,
                { topic: this.topic.arn, protocol: "email", endpoint: args.alarmEmail },
                { parent: this },
            );
        }

        this.alarms = args.instances.flatMap(({ role, instance }) => {
            const common = {
                namespace: "AWS/EC2",
                dimensions: { InstanceId: instance.id },
                statistic: "Maximum",
                period: 60,
                evaluationPeriods: failedMinutes,
                threshold: 1,
                comparisonOperator: "GreaterThanOrEqualToThreshold",
                treatMissingData: "missing",
                okActions: [this.topic.arn],
            };
            return [
                new aws.cloudwatch.MetricAlarm(
                    `${name}-${role}-instance-check`,
                    {
                        ...common,
                        name: `${prefix}-${role}-instance-check`,
                        alarmDescription: `${role}: the VM fails EC2's instance status check (kernel, memory, disk or network inside it)`,
                        metricName: "StatusCheckFailed_Instance",
                        alarmActions: [this.topic.arn],
                    },
                    { parent: this },
                ),
                new aws.cloudwatch.MetricAlarm(
                    `${name}-${role}-system-check`,
                    {
                        ...common,
                        name: `${prefix}-${role}-system-check`,
                        alarmDescription: `${role}: the host under the VM fails EC2's system status check; EC2 recovers the instance`,
                        metricName: "StatusCheckFailed_System",
                        alarmActions: [this.topic.arn, `arn:aws:automate:${region}:ec2:recover`],
                    },
                    { parent: this },
                ),
            ];
        });

        /** An alarm named `<prefix>-<id>`, sent to the topic when it fires and when it clears. */
        const topicAlarm = (id: string, alarm: Omit<aws.cloudwatch.MetricAlarmArgs, "name" | "alarmActions" | "okActions">) =>
            new aws.cloudwatch.MetricAlarm(
                `${name}-${id}`,
                { name: `${prefix}-${id}`, ...alarm, alarmActions: [this.topic.arn], okActions: [this.topic.arn] },
                { parent: this },
            );

        for (const { port, targetGroup, loadBalancer } of args.targetGroups ?? []) {
            this.alarms.push(
                topicAlarm(`unhealthy-proxies-${port}`, {
                    alarmDescription: `A proxy fails the load balancer's health check on port ${port}: it gets no new clients`,
                    namespace: "AWS/NetworkELB",
                    metricName: "UnHealthyHostCount",
                    dimensions: { TargetGroup: targetGroup.arnSuffix, LoadBalancer: loadBalancer.arnSuffix },
                    statistic: "Maximum",
                    period: 60,
                    evaluationPeriods: failedMinutes,
                    threshold: 1,
                    comparisonOperator: "GreaterThanOrEqualToThreshold",
                    treatMissingData: "notBreaching",
                }),
            );
        }

        // The sockets the hosts send once a minute, with the Stack and Role dimensions (all hosts of
        // a role together): the Maximum is the fullest host's, the Sum the fleet's (each host sends
        // once a minute, stamped with that minute). A host that sends nothing (stopped, being
        // replaced, refreshed out) is missing data, which never raises an alarm: a planned stop raises none.
        const stack = prefix;
        const socketAlarm = (
            id: string,
            description: string,
            role: "proxy" | "backend",
            statistic: "Maximum" | "Sum",
            threshold: pulumi.Input<number>,
        ) =>
            topicAlarm(id, {
                alarmDescription: description,
                namespace: metricsNamespace,
                metricName: "OpenSockets",
                dimensions: { Stack: stack, Role: role },
                statistic,
                period: 60,
                evaluationPeriods: 3,
                datapointsToAlarm: 2,
                threshold,
                comparisonOperator: "GreaterThanOrEqualToThreshold",
                treatMissingData: "missing",
            });
        const { capacity } = args;
        const proxyThreshold = pulumi.output(capacity.proxyMaxSockets).apply((max) => Math.ceil(alarmShare * (max ?? 0)));
        this.alarms.push(
            socketAlarm(
                "proxy-sockets",
                `A proxy holds ${alarmShare * 100}% of the sockets it admits (maxSockets): past it, new connections get 503`,
                "proxy",
                "Maximum",
                proxyThreshold,
            ),
        );
        if (capacity.proxyCount > 1)
            this.alarms.push(
                socketAlarm(
                    "fleet-sockets",
                    `The proxies together hold ${alarmShare * 100}% of what they admit: add proxies (proxyCount) or a larger proxyInstanceType`,
                    "proxy",
                    "Sum",
                    proxyThreshold.apply((each) => each * capacity.proxyCount),
                ),
            );
        const backendCap = pulumi.output(capacity.backendMaxSockets);
        this.alarms.push(
            socketAlarm(
                "backend-sockets",
                `A backend holds ${alarmShare * 100}% of its cap (MAX_SOCKETS): past it, it refuses upgrades and the edge tries the next`,
                "backend",
                "Maximum",
                backendCap.apply((cap) => Math.ceil(alarmShare * cap)),
            ),
        );
        // NGINX not answering its own health check on a VM that is up: the sender says 0 (a dead VM
        // sends nothing, and its status checks say so). Both shapes: the group's proxies too.
        this.alarms.push(
            topicAlarm("edge-health", {
                alarmDescription: "A proxy's NGINX does not answer its health check (/healthz on its own port) on a VM that is up",
                namespace: metricsNamespace,
                metricName: "HealthCheck",
                dimensions: { Stack: stack, Role: "proxy" },
                statistic: "Minimum",
                period: 60,
                evaluationPeriods: 2,
                threshold: 1,
                comparisonOperator: "LessThanThreshold",
                treatMissingData: "missing",
            }),
        );

        if (args.acmeCertificate) {
            // ACM publishes DaysToExpiry once a day for every certificate it holds. Missing data (the first
            // day, before ACM's first point) never raises it; an expired certificate, whose metric stops,
            // was under the threshold for weeks before.
            this.alarms.push(
                topicAlarm("certificate-renewal", {
                    alarmDescription:
                        "The edge's ACME certificate was not renewed in time: pulumi up (the weekly refresh workflow) renews it once a third of its lifetime is left; see docs/aws.md",
                    namespace: "AWS/CertificateManager",
                    metricName: "DaysToExpiry",
                    dimensions: { CertificateArn: args.acmeCertificate.acmCertificateArn },
                    statistic: "Minimum",
                    period: 86_400,
                    evaluationPeriods: 2,
                    datapointsToAlarm: 2,
                    threshold: args.acmeCertificate.alarmDaysLeft,
                    comparisonOperator: "LessThanThreshold",
                    treatMissingData: "missing",
                }),
            );
        }

        const instanceIds = pulumi.all(args.instances.map(({ role, instance }) => instance.id.apply((id) => ({ role, id }))));
        this.dashboard = new aws.cloudwatch.Dashboard(
            `${name}-dashboard`,
            {
                dashboardName: prefix,
                dashboardBody: pulumi
                    .all([instanceIds, pulumi.output(capacity.proxyMaxSockets), backendCap])
                    .apply(([ids, proxyMax, backendMax]) =>
                        JSON.stringify(
                            dashboardBody(region, ids, { stack, proxyMaxSockets: proxyMax ?? 0, backendMaxSockets: backendMax }),
                        ),
                    ),
            },
            { parent: this },
        );
        this.dashboardUrl = pulumi.interpolate`https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards:name=${this.dashboard.dashboardName}`;

        this.registerOutputs({ topicArn: this.topic.arn, dashboardUrl: this.dashboardUrl });
    }
}

/**
 * The sockets first (each proxy's and each backend's against its ceiling, drawn as a line), the
 * refusals, the backends marked down and the certificates' days left, from the metrics the hosts
 * send; then status checks, CPU and network of every instance.
 */
export function dashboardBody(
    region: string,
    instances: readonly { role: string; id: string }[],
    load: { readonly stack: string; readonly proxyMaxSockets: number; readonly backendMaxSockets: number },
) {
    const perHost = (host: "Proxy" | "Backend", metric: string, stat: string) => ({
        expression: `SEARCH('{${metricsNamespace},Stack,${host}} MetricName="${metric}" Stack="${load.stack}"', '${stat}', 60)`,
        id: `${host.toLowerCase()}${metric}`,
    });
    const byRole = (role: "proxy" | "backend", metric: string, label: string) => [
        metricsNamespace,
        metric,
        "Stack",
        load.stack,
        "Role",
        role,
        { label },
    ];
    const widget = (title: string, x: number, y: number, properties: Record<string, unknown>) => ({
        type: "metric",
        x,
        y,
        width: 12,
        height: 6,
        properties: { title, region, period: 60, ...properties },
    });
    const sockets = [
        widget("Open sockets per proxy", 0, 0, {
            stat: "Maximum",
            metrics: [[perHost("Proxy", "OpenSockets", "Maximum")]],
            annotations: { horizontal: [{ label: "ceiling (maxSockets)", value: load.proxyMaxSockets }] },
        }),
        widget("Open sockets per backend", 12, 0, {
            stat: "Maximum",
            metrics: [[perHost("Backend", "OpenSockets", "Maximum")]],
            annotations: { horizontal: [{ label: "cap (MAX_SOCKETS)", value: load.backendMaxSockets }] },
        }),
        widget("Refused connections", 0, 6, {
            stat: "Sum",
            metrics: [
                byRole("proxy", "RefusedAtCeiling", "at the ceiling (503)"),
                byRole("proxy", "RefusedPerAddress", "over one address's limit (503)"),
                byRole("backend", "RefusedFull", "by a full backend (tried the next)"),
            ],
        }),
        widget("Backends marked down by the health agent", 12, 6, {
            stat: "Maximum",
            metrics: [byRole("proxy", "BackendsMarkedDown", "marked down")],
        }),
        widget("Certificates: days left", 0, 12, {
            stat: "Minimum",
            period: 3600,
            metrics: [
                byRole("proxy", "EdgeCertificateDaysLeft", "edge"),
                byRole("proxy", "ProxyClientCertificateDaysLeft", "proxy client"),
                byRole("proxy", "CaCertificateDaysLeft", "stack CA"),
                byRole("backend", "BackendCertificateDaysLeft", "backends (the soonest)"),
            ],
        }),
    ];
    const status = dashboardInstances(region, instances, 18);
    return { widgets: [...sockets, ...status] };
}

/** Status checks, CPU and network of every instance, a graph each, from row `top` down. */
function dashboardInstances(region: string, instances: readonly { role: string; id: string }[], top: number) {
    const graph = (title: string, metric: string, stat: string, x: number, y: number) => ({
        type: "metric",
        x,
        y,
        width: 12,
        height: 6,
        properties: {
            title,
            region,
            stat,
            period: 60,
            metrics: instances.map(({ role, id }) => ["AWS/EC2", metric, "InstanceId", id, { label: role }]),
        },
    });
    return [
        graph("Status check failed (1 = failing)", "StatusCheckFailed", "Maximum", 0, top),
        graph("CPU utilization (%)", "CPUUtilization", "Average", 12, top),
        graph("Network in (bytes)", "NetworkIn", "Sum", 0, top + 6),
        graph("Network out (bytes)", "NetworkOut", "Sum", 12, top + 6),
    ];
}
