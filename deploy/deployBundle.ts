import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { edgeTlsFiles } from "../pki/certificateLayout";

/** The backend health agent (deploy/backend-health-agent.sh): every release carries the version it runs with. */
export const backendHealthAgentFile = "backend-health-agent.sh";
export const backendHealthAgentScript = readFileSync(join(__dirname, backendHealthAgentFile), "utf8");

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
}

/** The release as the deploy script stages it: nginx.conf beside the TLS files it names, and the health agent. */
export function releaseFiles(release: EdgeRelease): Record<string, string> {
    return {
        "nginx.conf": release.nginxConfig,
        [edgeTlsFiles.certificate]: release.certificateChainPem,
        [edgeTlsFiles.certificateKey]: release.privateKeyPem,
        [edgeTlsFiles.backendCa]: release.backendCaPem,
        [edgeTlsFiles.proxyClientCertificate]: release.proxyClientCertificatePem,
        [edgeTlsFiles.proxyClientKey]: release.proxyClientKeyPem,
        ...(release.backendHealthAgent ? { [backendHealthAgentFile]: backendHealthAgentScript } : {}),
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
