/**
 * CloudWatch's PutMetricData on loopback, as the AWS CLI sends it (`--endpoint-url`): the Query
 * protocol (a form-encoded POST, `Action=PutMetricData`), answered as CloudWatch answers it. It
 * keeps every datapoint it is sent, so what the edge's metric sender (deploy/edge-metrics.sh)
 * would put in CloudWatch can be read back here. Signatures are not checked.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import { gunzipSync } from "node:zlib";

export interface Datapoint {
    readonly namespace: string;
    readonly metricName: string;
    readonly value: number;
    readonly unit: string;
    readonly timestamp: string;
    readonly dimensions: Readonly<Record<string, string>>;
}

export class CloudWatchStandIn {
    readonly datapoints: Datapoint[] = [];

    private constructor(
        private readonly server: Server,
        /** What `--endpoint-url` takes. */
        readonly endpoint: string,
    ) {}

    static async start(host = "127.0.0.1"): Promise<CloudWatchStandIn> {
        let standIn: CloudWatchStandIn | undefined;
        const server = createServer((request, response) => {
            const chunks: Buffer[] = [];
            request.on("data", (chunk) => chunks.push(chunk));
            request.on("end", () => {
                const body = Buffer.concat(chunks);
                const text = (request.headers["content-encoding"] === "gzip" ? gunzipSync(body) : body).toString("utf8");
                const form = new URLSearchParams(text);
                const reply = (status: number, xml: string) => {
                    response.writeHead(status, { "content-type": "text/xml" });
                    response.end(`<?xml version="1.0"?>\n${xml}\n`);
                };
                if (form.get("Action") !== "PutMetricData") {
                    reply(
                        400,
                        `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>the stand-in speaks PutMetricData only, not ${form.get("Action")}</Message></Error></ErrorResponse>`,
                    );
                    return;
                }
                standIn?.datapoints.push(...datapointsOf(form));
                reply(
                    200,
                    `<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></PutMetricDataResponse>`,
                );
            });
        });
        await new Promise<void>((resolve, reject) => {
            server.once("error", reject);
            server.listen(0, host, resolve);
        });
        const { port } = server.address() as { port: number };
        standIn = new CloudWatchStandIn(server, `http://${host}:${port}`);
        return standIn;
    }

    /** The latest value of `metricName` with exactly these dimensions, if any was sent. */
    latest(metricName: string, dimensions: Readonly<Record<string, string>>): number | undefined {
        const same = (a: Readonly<Record<string, string>>) =>
            Object.keys(a).length === Object.keys(dimensions).length && Object.entries(dimensions).every(([k, v]) => a[k] === v);
        return this.datapoints.filter((d) => d.metricName === metricName && same(d.dimensions)).at(-1)?.value;
    }

    stop(): Promise<void> {
        return new Promise((resolve) => this.server.close(() => resolve()));
    }
}

/** The Query protocol's members: MetricData.member.N.Field and MetricData.member.N.Dimensions.member.M.Name/Value. */
function datapointsOf(form: URLSearchParams): Datapoint[] {
    const namespace = form.get("Namespace") ?? "";
    const points: Datapoint[] = [];
    for (let n = 1; form.has(`MetricData.member.${n}.MetricName`); n++) {
        const field = (name: string) => form.get(`MetricData.member.${n}.${name}`) ?? "";
        const dimensions: Record<string, string> = {};
        for (let m = 1; form.has(`MetricData.member.${n}.Dimensions.member.${m}.Name`); m++)
            dimensions[field(`Dimensions.member.${m}.Name`)] = field(`Dimensions.member.${m}.Value`);
        points.push({
            namespace,
            metricName: field("MetricName"),
            value: Number(field("Value")),
            unit: field("Unit"),
            timestamp: field("Timestamp"),
            dimensions,
        });
    }
    return points;
}
