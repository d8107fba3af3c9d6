/**
 * The edge, planned once: from the settings and where it is placed, everything it is made of —
 * the PKI to issue, what each backend runs with, the proxy's host profile and capacity, the
 * rendered NGINX config, the release every proxy gets, the health gate's credentials, and whether
 * the health agent runs. Pure, so the AWS program (components/wssEdge.ts), the local stack (local/) and the VM
 * twin (twin/) are adapters that place what it says, and run the same edge by construction.
 */
import { encodeDeployBundle, releaseFiles } from "../deploy/deployBundle";
import { type EdgeHostProfile, edgeConfigSpec } from "../nginx/edgeConfigFromSettings";
import type { EdgeConfigSpec, UpstreamServer } from "../nginx/edgeConfigSpec";
import { upstreamServerName } from "../nginx/render/upstream";
import { renderNginxConfig } from "../nginx/renderNginxConfig";
import { backendTlsFiles } from "../pki/certificateLayout";
import { edgePkiSpec, type PkiSpec } from "../pki/pkiSpec";
import type { CertificateSource, EdgeSettings } from "../settings/edgeSettings";
import type { ProxyPlatform } from "../settings/settingsTable";
import { backendSocketCeiling, defaultBackendMachine, socketCeiling, vmProxyHost } from "./capacity";

export type PlacementKind = "aws" | "local" | "twin";

/**
 * The machine a proxy runs on: a VM of the proxy's image (on AWS, and its twin here), known by its
 * size, or the local stack's own host profile (its ports and state folder).
 */
export type ProxyMachine =
    | {
          readonly kind: "vm";
          readonly memoryMiB: number;
          readonly vcpus: number;
          /** Behind a load balancer: the addresses whose PROXY protocol headers NGINX believes. */
          readonly proxyProtocolFrom?: readonly string[];
      }
    | { readonly kind: "local"; readonly host: EdgeHostProfile };

/** Where the edge is placed: the facts of a placement, and nothing else. */
export interface EdgePlacement {
    readonly kind: PlacementKind;
    readonly proxy: ProxyMachine;
    /** The names clients use: the certificate's, server_name, the edge's own origin. */
    readonly serverNames: readonly string[];
    /** The port clients reach the edge at: 443 on a VM, the endpoint's port locally (also behind the local front). */
    readonly publicPort: number;
    /** The backends, as the proxy reaches them. */
    readonly backends: readonly UpstreamServer[];
    /** What each backend runs on: its memory sets how many sockets it holds. */
    readonly backendMachine: { readonly memoryMiB: number };
}

/**
 * What may differ between the placements of one edge, by construction: these fields of the
 * renderer's spec, which come from the placement's facts (its machine, names, ports and backends).
 * Everything else of two placements' plans is the same; the rendered config is a function of the
 * spec alone. A property test holds the three placements to it.
 */
export const placementFields = [
    "serverNames",
    "rejectUnknownNames",
    "publicPort",
    "listen",
    "statusListen",
    "httpRedirectPort",
    "upstream.servers",
    "limits.totalSockets",
    "workers.user",
    "workers.processes",
    "workers.connections",
    "workers.fileLimit",
    "paths",
    /** Only when the allowedOrigins setting is empty: then they are the edge's own origins, its names on its port. */
    "allowedOrigins",
] as const;

/** The plan's spec without its placement fields: what every placement of the same settings shares. */
export function sharedSpec(plan: EdgePlan): unknown {
    const spec = structuredClone(plan.spec) as unknown as Record<string, Record<string, unknown>>;
    for (const field of placementFields) {
        if (field === "allowedOrigins" && plan.settings.allowedOrigins.length > 0) continue;
        const [head, tail] = field.split(".");
        if (tail === undefined) delete spec[head];
        else if (spec[head] !== undefined) delete spec[head][tail];
    }
    return spec;
}

export interface EdgePlan {
    readonly settings: EdgeSettings;
    readonly placement: EdgePlacement;
    /** What the renderer is told; the config is its rendering. */
    readonly spec: EdgeConfigSpec;
    /** How NGINX runs on the proxy's machine. */
    readonly host: EdgeHostProfile;
    /** WebSockets the proxy admits at once; undefined: no ceiling but NGINX's own (the local stack). */
    readonly maxSockets: number | undefined;
    /** WebSockets one backend holds, all proxies together (it answers 503 past them, and the edge tries the next). */
    readonly backendMaxSockets: number;
    readonly nginxConfig: string;
    /** What every backend runs with, besides its own name, address and certificate. */
    readonly backendEnvironment: BackendEnvironment;
    /** Whether each proxy runs the backend health agent beside NGINX (the activeHealthChecks setting). */
    readonly healthAgent: boolean;
    /** The proxies' platform (proxyPlatform), which the release names. */
    readonly platform: ProxyPlatform;
}

/** The plan of an edge with `settings`, placed at `placement`. */
export function planEdge(settings: EdgeSettings, placement: EdgePlacement): EdgePlan {
    const host =
        placement.proxy.kind === "vm"
            ? vmProxyHost(
                  {
                      memoryMiB: placement.proxy.memoryMiB,
                      vcpus: placement.proxy.vcpus,
                      backendCount: placement.backends.length,
                      tunnelBufferKiB: settings.tunnelBufferKiB,
                      platform: settings.proxyPlatform,
                  },
                  placement.proxy.proxyProtocolFrom ? { proxyProtocolFrom: placement.proxy.proxyProtocolFrom } : {},
              )
            : placement.proxy.host;
    const spec = edgeConfigSpec(settings, placement.backends, host, placement.serverNames, placement.publicPort);
    return {
        settings,
        placement,
        spec,
        host,
        maxSockets: socketCeiling(settings, host),
        backendMaxSockets: backendSocketCeiling(settings, placement.backendMachine),
        nginxConfig: renderNginxConfig(spec),
        backendEnvironment: backendEnvironmentOf(settings, placement.backendMachine),
        healthAgent: settings.activeHealthChecks,
        platform: settings.proxyPlatform,
    };
}

/** What every backend is told by the edge's settings, in every placement (backend/server.mjs reads it). */
export interface BackendEnvironment {
    readonly PING_INTERVAL_SECONDS: string;
    readonly MAX_BUFFERED_BYTES: string;
    readonly STUCK_SECONDS: string;
    readonly CLOSE_SPREAD_SECONDS: string;
    readonly MAX_SOCKETS: string;
    readonly REBALANCE_SECONDS: string;
}

export function backendEnvironmentOf(
    settings: Pick<
        EdgeSettings,
        "idleTimeoutSeconds" | "backendBufferKiB" | "closeSpreadSeconds" | "backendMaxSockets" | "rebalanceSeconds"
    >,
    machine: EdgePlacement["backendMachine"],
): BackendEnvironment {
    return {
        PING_INTERVAL_SECONDS: String(backendPingIntervalSeconds(settings)),
        MAX_BUFFERED_BYTES: String(settings.backendBufferKiB * 1024),
        // Before NGINX's own send timeout (idleTimeoutSeconds) would cut it without a word.
        STUCK_SECONDS: String(Math.max(5, Math.floor(settings.idleTimeoutSeconds / 2))),
        CLOSE_SPREAD_SECONDS: String(settings.closeSpreadSeconds),
        // The backend counts its own sockets, whichever proxy they came through (see backendSocketCeiling).
        MAX_SOCKETS: String(backendSocketCeiling(settings, machine)),
        REBALANCE_SECONDS: String(settings.rebalanceSeconds),
    };
}

/**
 * What a backend is told of the fleet once every proxy routes by it (backend/server.mjs reads it
 * on SIGHUP and moves the sockets whose key now hashes elsewhere): how the upstream hashes, its
 * servers as it names them and in its order, and which one this backend is.
 */
export interface BackendFleetFile {
    readonly affinity: "client-address" | "hash";
    readonly servers: readonly string[];
    readonly self: string;
}

export function backendFleetFile(plan: Pick<EdgePlan, "spec">, self: UpstreamServer): BackendFleetFile {
    return {
        affinity: plan.spec.affinity.kind === "client-address" ? "client-address" : "hash",
        servers: plan.spec.upstream.servers.map(upstreamServerName),
        self: upstreamServerName(self),
    };
}

/**
 * How often a backend pings each client: well inside the idle timeout, so that a live
 * socket never reaches it, and at most every 30 s.
 */
export function backendPingIntervalSeconds(settings: Pick<EdgeSettings, "idleTimeoutSeconds">): number {
    return Math.max(1, Math.min(30, Math.floor(settings.idleTimeoutSeconds / 3)));
}

/** The PKI an edge needs: its own certificate for the names and addresses clients use, one per backend, the proxy's client certificate. */
export function edgePkiPlan(
    settings: Pick<EdgeSettings, "backendCount">,
    edge: { readonly dnsNames: readonly string[]; readonly ipAddresses: readonly string[]; readonly certificate: CertificateSource },
): PkiSpec {
    return edgePkiSpec({
        edgeDnsNames: [...edge.dnsNames],
        edgeIpAddresses: [...edge.ipAddresses],
        backendCount: settings.backendCount,
        // Your certificate or an ACME CA's: the stack's CA signs no edge certificate.
        userSuppliedEdgeCertificate: edge.certificate !== "stack-ca",
    });
}

/** What the PKI gives a release and a health gate, by the names the local issuer and the AWS component share. */
export interface EdgeCertificates {
    readonly caCertificatePem: string;
    /** Edge leaf followed by its chain. */
    readonly edgeCertificateChainPem: string;
    readonly edgePrivateKeyPem: string;
    readonly proxyClientCertificate: { readonly certificatePem: string; readonly privateKeyPem: string };
}

/** The files of the release every proxy of the plan gets: the config, the TLS files it names, the health agent if it runs. */
export function releaseOf(
    plan: Pick<EdgePlan, "nginxConfig" | "healthAgent" | "platform">,
    certificates: EdgeCertificates,
    /** Where the proxies send their metrics (metrics.env), on AWS. */
    metricsEnvironment?: string,
): Record<string, string> {
    return releaseFiles({
        metricsEnvironment,
        nginxConfig: plan.nginxConfig,
        certificateChainPem: certificates.edgeCertificateChainPem,
        privateKeyPem: certificates.edgePrivateKeyPem,
        backendCaPem: certificates.caCertificatePem,
        proxyClientCertificatePem: certificates.proxyClientCertificate.certificatePem,
        proxyClientKeyPem: certificates.proxyClientCertificate.privateKeyPem,
        backendHealthAgent: plan.healthAgent,
        platform: plan.platform,
    });
}

/** The release as the deploy script reads it on standard input. */
export function releaseBundle(plan: Pick<EdgePlan, "nginxConfig" | "healthAgent" | "platform">, certificates: EdgeCertificates): string {
    return encodeDeployBundle(releaseOf(plan, certificates));
}

/** The TLS files a backend serves with, by name (backendTlsFiles): its certificate and key, and the CA the proxy's client certificate must chain to. */
export function backendTlsOf(
    certificate: { readonly certificatePem: string; readonly privateKeyPem: string },
    caCertificatePem: string,
): Record<string, string> {
    return {
        [backendTlsFiles.certificate]: certificate.certificatePem,
        [backendTlsFiles.key]: certificate.privateKeyPem,
        [backendTlsFiles.clientCa]: caCertificatePem,
    };
}

/** What the health gate on a proxy checks a backend with: the CA and the proxy's client certificate, as it reads them on standard input. */
export function healthGateCredentials(certificates: Omit<EdgeCertificates, "edgeCertificateChainPem" | "edgePrivateKeyPem">): string {
    return encodeDeployBundle({
        "ca.crt": certificates.caCertificatePem,
        "client.crt": certificates.proxyClientCertificate.certificatePem,
        "client.key": certificates.proxyClientCertificate.privateKeyPem,
    });
}

/** The machine the VM twin stands for: the default proxy instance type's memory and vCPUs (c6i.large). */
export const twinMachine = { memoryMiB: 4096, vcpus: 2 } as const;

/** On AWS: the proxy VM by its instance type, the edge's public name, the backends' private addresses. */
export function awsPlacement(facts: {
    readonly memoryMiB: number;
    readonly vcpus: number;
    /** The backends' instance type's memory. */
    readonly backendMemoryMiB: number;
    readonly publicName: string;
    readonly backendAddresses: readonly string[];
    readonly backendPort: number;
    /** Behind the Network Load Balancer: the VPC's ranges (all of them: a subnet may be in a secondary one), where its nodes' PROXY protocol headers come from. */
    readonly balancerRanges?: readonly string[];
}): EdgePlacement {
    return {
        kind: "aws",
        proxy: {
            kind: "vm",
            memoryMiB: facts.memoryMiB,
            vcpus: facts.vcpus,
            ...(facts.balancerRanges ? { proxyProtocolFrom: facts.balancerRanges } : {}),
        },
        serverNames: [facts.publicName],
        publicPort: 443,
        backends: facts.backendAddresses.map((address) => ({ address, port: facts.backendPort })),
        backendMachine: { memoryMiB: facts.backendMemoryMiB },
    };
}

/** On the VM twin: the proxy VM's image on the machine it stands for, reached as localhost, in front of backends on this machine. */
export function twinPlacement(backends: readonly UpstreamServer[]): EdgePlacement {
    return {
        kind: "twin",
        proxy: { kind: "vm", ...twinMachine },
        serverNames: ["localhost"],
        publicPort: 443,
        backends,
        backendMachine: defaultBackendMachine,
    };
}

/** On this machine: a proxy's own host profile, the endpoint's port (the front's, when there are several proxies). */
export function localPlacement(host: EdgeHostProfile, publicPort: number, backends: readonly UpstreamServer[]): EdgePlacement {
    return {
        kind: "local",
        proxy: { kind: "local", host },
        serverNames: ["localhost"],
        publicPort,
        backends,
        backendMachine: defaultBackendMachine,
    };
}
