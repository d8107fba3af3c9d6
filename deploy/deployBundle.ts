import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { edgeTlsFiles } from "../pki/certificateLayout";

/** The backend health agent (deploy/backend-health-agent.sh): every release carries the version it runs with. */
export const backendHealthAgentFile = "backend-health-agent.sh";
export const backendHealthAgentScript = readFileSync(join(__dirname, backendHealthAgentFile), "utf8");

/** The metric sender (deploy/edge-metrics.sh), and what it is told: each release that sends metrics carries both. */
export const metricsSenderFile = "edge-metrics.sh";
export const metricsSenderScript = readFileSync(join(__dirname, metricsSenderFile), "utf8");
export const metricsEnvironmentFile = "metrics.env";

/**
 * What a host's metric sender is told (metrics.env): the namespace, the stack's name for the
 * Stack dimension, the region to send to, and CloudWatch's API where it is not AWS's (a stand-in).
 */
export function metricsEnvironment(options: {
    readonly namespace: string;
    readonly stack: string;
    readonly region: string;
    readonly endpoint?: string;
}): string {
    return [
        `WSS_EDGE_METRICS_NAMESPACE=${options.namespace}`,
        `WSS_EDGE_METRICS_STACK=${options.stack}`,
        `AWS_DEFAULT_REGION=${options.region}`,
        ...(options.endpoint ? [`WSS_EDGE_CLOUDWATCH_ENDPOINT=${options.endpoint}`] : []),
        "",
    ].join("\n");
}

/** The files that have a host send its metrics: the sender and its environment. */
export function metricsFiles(environment: string | undefined): Record<string, string> {
    return environment === undefined ? {} : { [metricsSenderFile]: metricsSenderScript, [metricsEnvironmentFile]: environment };
}

/** What one edge release holds, before it is laid out as files. */
export interface EdgeRelease {
    readonly nginxConfig: string;
    /** Edge leaf followed by its chain. */
    readonly certificateChainPem: string;
    readonly privateKeyPem: string;
    readonly backendCaPem: string;
    readonly proxyClientCertificatePem: string;
    readonly proxyClientKeyPem: string;
    /** Carry the backend health agent, which the deploy then runs beside NGINX (the activeHealthChecks setting). */
    readonly backendHealthAgent: boolean;
    /** metrics.env, where the proxies send their metrics to CloudWatch (on AWS); none elsewhere. */
    readonly metricsEnvironment?: string;
    /** The proxy platform the config is for (proxyPlatform): a proxy of another keeps its live release. */
    readonly platform: string;
}

/** The release as the deploy script stages it: nginx.conf beside the TLS files it names, and the health agent. */
export function releaseFiles(release: EdgeRelease): Record<string, string> {
    return {
        "nginx.conf": release.nginxConfig,
        platform: `${release.platform}\n`,
        [edgeTlsFiles.certificate]: release.certificateChainPem,
        [edgeTlsFiles.certificateKey]: release.privateKeyPem,
        [edgeTlsFiles.backendCa]: release.backendCaPem,
        [edgeTlsFiles.proxyClientCertificate]: release.proxyClientCertificatePem,
        [edgeTlsFiles.proxyClientKey]: release.proxyClientKeyPem,
        ...(release.backendHealthAgent ? { [backendHealthAgentFile]: backendHealthAgentScript } : {}),
        ...metricsFiles(release.metricsEnvironment),
    };
}

/**
 * The files of one edge release (nginx.conf and its TLS files), as the deploy script reads
 * them on standard input: one line per file, `<relative path> <base64 content>`, sorted by
 * path so that equal releases are equal bytes. Keys travel this way, never as arguments
 * or in user data.
 */
export function encodeDeployBundle(files: Readonly<Record<string, string>>): string {
    return `${Object.keys(files)
        .sort()
        .map((path) => {
            if (!isBundlePath(path)) throw new Error(`deploy bundle: ${JSON.stringify(path)} is not a safe relative path`);
            return `${path} ${Buffer.from(files[path], "utf8").toString("base64")}`;
        })
        .join("\n")}\n`;
}

/** Same rule the deploy script enforces: relative, no `..`, plain characters. */
export function isBundlePath(path: string): boolean {
    return /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(path) && !path.split("/").some((part) => part === "..");
}

/** SHA-256 of a text, in hex: what names a release in the store, and the digests its triggers show in a preview. */
export function sha256(text: string): string {
    return createHash("sha256").update(text).digest("hex");
}
