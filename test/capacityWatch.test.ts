// Watching the edge's load on AWS, under Pulumi's mocks: every proxy and backend sends its
// metrics (deploy/edge-metrics.sh in its release, with what to send them as, run by a systemd
// timer the deploy installs), its role may send to the edge's namespace only, and the alarms and
// the dashboard read them: sockets against each proxy's ceiling (maxSockets) and the fleet's,
// each backend against its cap, NGINX's own health check, all to the stack's topic.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { alarmShare } from "../components/edgeMonitoring";
import { metricsSenderScript } from "../deploy/deployBundle";
import { once } from "./support/once";
import { bundleFiles, named, ofType, type RegisteredResource, resolved, runEdgeProgram } from "./support/pulumiProgram";

const stack = "wss-edge-dev";
const topic = "arn:aws:sns:eu-west-1:123456789012:edge-alarms";

for (const [shape, config] of [
    ["one VM", {}],
    ["three proxies behind the balancer", { proxyCount: "3" }],
] as const) {
    describe(`the edge's load on AWS, ${shape}`, () => {
        const run = once(() => runEdgeProgram(config));
        const backendCap = async (resources: RegisteredResource[]) =>
            Number(
                /^MAX_SOCKETS=(\d+)$/m.exec(
                    bundleFiles(named(resources, "edge-backends-backend-1-release").inputs.content)["backend.env"],
                )?.[1],
            );

        it("has every proxy's and backend's release carry the sender and what to send as; the deploys run it by a timer", async () => {
            const { resources } = await run();
            for (const release of ["edge-deploy-release", "edge-backends-backend-1-release", "edge-backends-backend-3-release"]) {
                const files = bundleFiles(named(resources, release).inputs.content);
                assert.equal(files["edge-metrics.sh"], metricsSenderScript, release);
                assert.equal(
                    files["metrics.env"],
                    `WSS_EDGE_METRICS_NAMESPACE=WssEdge\nWSS_EDGE_METRICS_STACK=${stack}\nAWS_DEFAULT_REGION=eu-west-1\n`,
                );
            }
            const edge = bundleFiles(named(resources, "edge-deploy-release").inputs.content);
            assert.match(edge["deploy-edge-config.sh"], /edge-metrics\.sh" install-timer proxy/);
        });

        it("lets each VM's role send metrics to the edge's namespace only", async () => {
            const { resources } = await run();
            const policies = ofType(resources, "aws:iam/rolePolicy:RolePolicy");
            assert.ok(policies.length >= 4);
            for (const policy of policies) {
                const statements = JSON.parse(await resolved(policy.inputs.policy)).Statement as { Action: unknown; Condition?: unknown }[];
                assert.deepEqual(
                    statements.filter((s) => JSON.stringify(s.Action).includes("cloudwatch")),
                    [
                        {
                            Effect: "Allow",
                            Action: "cloudwatch:PutMetricData",
                            Resource: "*",
                            Condition: { StringEquals: { "cloudwatch:namespace": "WssEdge" } },
                        },
                    ],
                    policy.name,
                );
            }
        });

        it(`alarms when a proxy holds ${alarmShare * 100}% of maxSockets, and a backend ${alarmShare * 100}% of its cap, to the stack's topic`, async () => {
            const { resources, outputs } = await run();
            const maxSockets = outputs.maxSockets as number;
            assert.ok(maxSockets > 0);
            const proxy = named(resources, "edge-proxy-sockets");
            assert.deepEqual(
                {
                    namespace: proxy.inputs.namespace,
                    metricName: proxy.inputs.metricName,
                    dimensions: await resolved(proxy.inputs.dimensions),
                    statistic: proxy.inputs.statistic,
                    period: proxy.inputs.period,
                    threshold: await resolved(proxy.inputs.threshold),
                    comparisonOperator: proxy.inputs.comparisonOperator,
                    treatMissingData: proxy.inputs.treatMissingData,
                    alarmActions: await resolved(proxy.inputs.alarmActions),
                },
                {
                    namespace: "WssEdge",
                    metricName: "OpenSockets",
                    dimensions: { Stack: stack, Role: "proxy" },
                    statistic: "Maximum",
                    period: 60,
                    threshold: Math.ceil(0.8 * maxSockets),
                    comparisonOperator: "GreaterThanOrEqualToThreshold",
                    treatMissingData: "missing",
                    alarmActions: [topic],
                },
            );
            const backend = named(resources, "edge-backend-sockets");
            assert.deepEqual(await resolved(backend.inputs.dimensions), { Stack: stack, Role: "backend" });
            assert.equal(await resolved(backend.inputs.threshold), Math.ceil(0.8 * (await backendCap(resources))));
            const fleet = resources.find((r) => r.name === "edge-fleet-sockets");
            if (config.proxyCount === undefined) assert.equal(fleet, undefined, "one VM: the proxy is the fleet");
            else {
                assert.ok(fleet);
                assert.equal(fleet.inputs.statistic, "Sum");
                assert.equal(await resolved(fleet.inputs.threshold), 3 * Math.ceil(0.8 * maxSockets));
            }
        });

        it("alarms when a proxy's NGINX does not answer its health check, and not on a planned stop (no data never raises it)", async () => {
            const { resources } = await run();
            const health = named(resources, "edge-edge-health");
            assert.equal(health.inputs.metricName, "HealthCheck");
            assert.deepEqual(await resolved(health.inputs.dimensions), { Stack: stack, Role: "proxy" });
            assert.equal(health.inputs.statistic, "Minimum");
            assert.equal(health.inputs.comparisonOperator, "LessThanThreshold");
            assert.equal(health.inputs.threshold, 1);
            assert.equal(health.inputs.treatMissingData, "missing");
            assert.deepEqual(await resolved(health.inputs.alarmActions), [topic]);
        });

        it("graphs each proxy's and each backend's open sockets with the ceiling drawn as a line, the refusals and the certificates' days left", async () => {
            const { resources, outputs } = await run();
            const body = JSON.parse(await resolved(named(resources, "edge-dashboard").inputs.dashboardBody)) as {
                widgets: { properties: { title: string; metrics: unknown[]; annotations?: { horizontal: { value: number }[] } } }[];
            };
            const widget = (title: string) => body.widgets.find((w) => w.properties.title === title) ?? assert.fail(title);
            const proxies = widget("Open sockets per proxy");
            assert.match(
                JSON.stringify(proxies.properties.metrics),
                new RegExp(`SEARCH\\('\\{WssEdge,Stack,Proxy\\} MetricName=\\\\"OpenSockets\\\\" Stack=\\\\"${stack}\\\\"'`),
            );
            assert.deepEqual(
                proxies.properties.annotations?.horizontal.map((h) => h.value),
                [outputs.maxSockets],
            );
            assert.deepEqual(
                widget("Open sockets per backend").properties.annotations?.horizontal.map((h) => h.value),
                [await backendCap(resources)],
            );
            assert.match(
                JSON.stringify(widget("Refused connections").properties.metrics),
                /RefusedAtCeiling.*RefusedPerAddress.*RefusedFull/,
            );
            assert.match(JSON.stringify(widget("Certificates: days left").properties.metrics), /EdgeCertificateDaysLeft/);
            widget("Backends marked down by the health agent");
        });
    });
}
