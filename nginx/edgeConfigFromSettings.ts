import { proxyHost, systemFileLimit } from "../host/proxyHost";
import { edgeTlsFiles } from "../pki/certificateLayout";
import { backendServerName } from "../pki/pkiSpec";
import { isIpLiteral } from "../settings/addresses";
import type { EdgeSettings } from "../settings/edgeSettings";
import { settingsTable } from "../settings/settingsTable";
import type { EdgeConfigSpec, UpstreamServer } from "./edgeConfigSpec";
import { tlsPolicies } from "./tlsPolicy";

/** What differs between the machines the edge runs on: ports, process limits, file places. */
export interface EdgeHostProfile {
    readonly listen: EdgeConfigSpec["listen"];
    /** Where NGINX answers stub_status for the host's metrics exporter (loopback). */
    readonly statusListen?: EdgeConfigSpec["statusListen"];
    /** Port of the HTTP-to-HTTPS redirect, where the host offers one. */
    readonly httpRedirectPort?: number;
    readonly workers: Omit<EdgeConfigSpec["workers"], "shutdownTimeoutSeconds">;
    readonly paths: EdgeConfigSpec["paths"];
    /** The most WebSockets this host admits at once (see `proxySocketCeiling`); omitted means no ceiling but NGINX's own. */
    readonly maxSockets?: number;
}

/** What the proxy VM offers, from EC2's description of its instance type, and how many backends it fronts. */
export interface ProxyCapacity {
    readonly memoryMiB: number;
    readonly vcpus: number;
    readonly backendCount: number;
    /** The tunnelBufferKiB setting (default: the setting's default). */
    readonly tunnelBufferKiB?: number;
}

/**
 * NGINX's memory per held WebSocket with TLS on both legs at the default tunnel buffers: the
 * largest figure of the full benchmark (PSS over all NGINX processes; its scale step from 5,000 to
 * 100,000 sockets and the tunnel-buffer sweep, bench/results/latest.md), rounded up. A test holds
 * it to the committed results.
 */
export const proxyMemoryPerSocketKiB = 68;

/**
 * The cost per socket with `tunnelBufferKiB`: each socket keeps two tunnel buffers, one per
 * direction. 2 KiB per KiB of buffer is on the safe side of both measured changes from the default
 * (1 KiB: −9.9 KiB per socket; 16 KiB: +8.4; bench/results/tunnel-buffers.md).
 */
export function memoryPerSocketKiB(tunnelBufferKiB: number = settingsTable.tunnelBufferKiB.default): number {
    return proxyMemoryPerSocketKiB + 2 * (tunnelBufferKiB - settingsTable.tunnelBufferKiB.default);
}
/** Ephemeral ports the proxy VM's sysctl opens (1024–65000): one per socket to each backend. */
const portsPerBackend = 60000;

/**
 * The most WebSockets the proxy admits, so that it never runs out of memory: what is left of
 * its memory after 512 MiB for the OS and a quarter for the kernel's socket buffers and
 * traffic bursts, divided by the measured cost per socket; and never more than the ports
 * towards the backends or the system's descriptors allow. Beyond it, new upgrades get 503.
 */
export function proxySocketCeiling(capacity: ProxyCapacity): number {
    const usableMiB = capacity.memoryMiB - 512 - capacity.memoryMiB / 4;
    const byMemory = Math.floor((usableMiB * 1024) / memoryPerSocketKiB(capacity.tunnelBufferKiB));
    return Math.max(1000, Math.min(byMemory, portsPerBackend * capacity.backendCount, Math.floor(systemFileLimit / 2) - 10000));
}

/**
 * The proxy VM: NGINX from the distribution, run by systemd as root, one worker per vCPU. Any
 * one worker may hold every socket (the kernel's reuseport spreads them, but not exactly), so
 * each gets connection slots for all of them; the ceiling itself is enforced across workers.
 */
export function awsProxyHost(capacity: ProxyCapacity, behind: Pick<EdgeHostProfile["listen"], "proxyProtocolFrom"> = {}): EdgeHostProfile {
    const maxSockets = proxySocketCeiling(capacity);
    const connections = 2 * maxSockets + 1024;
    return {
        listen: { port: 443, ipv6: true, ...behind },
        httpRedirectPort: 80,
        statusListen: { address: "127.0.0.1", port: proxyHost.statusPort },
        workers: { user: "www-data", processes: Math.max(1, capacity.vcpus), connections, fileLimit: connections + 1024 },
        maxSockets,
        paths: { pidFile: "/run/nginx.pid", errorLog: "/var/log/nginx/error.log", accessLog: "/var/log/nginx/access.log" },
    };
}

/** Upstream failure accounting: 3 failures in 10 s take a backend out for 10 s. */
const upstreamHealth = { maxFails: 3, failTimeoutSeconds: 10 };

/** The renderer's spec for an edge in front of `backends`, on `host`. */
export function edgeConfigSpec(
    settings: EdgeSettings,
    backends: readonly UpstreamServer[],
    host: EdgeHostProfile,
    serverNames: readonly string[],
): EdgeConfigSpec {
    return {
        serverNames,
        rejectUnknownNames: serverNames.every((name) => !isIpLiteral(name)),
        listen: host.listen,
        httpRedirectPort: settings.httpRedirect ? host.httpRedirectPort : undefined,
        statusListen: host.statusListen,
        tls: {
            policy: tlsPolicies[settings.tlsPolicy],
            certificate: edgeTlsFiles.certificate,
            certificateKey: edgeTlsFiles.certificateKey,
            sessionCacheMiB: 20,
        },
        upstream: { servers: backends, ...upstreamHealth },
        affinity: affinityOf(settings),
        allowedOrigins: allowedOriginsOf(settings, serverNames, host.listen.port),
        backendTls: {
            trustedCertificate: edgeTlsFiles.backendCa,
            serverName: backendServerName,
            clientCertificate: edgeTlsFiles.proxyClientCertificate,
            clientCertificateKey: edgeTlsFiles.proxyClientKey,
            protocol: settings.backendTlsProtocol,
        },
        tunnelBufferKiB: settings.tunnelBufferKiB,
        timeouts: { idleSeconds: settings.idleTimeoutSeconds, connectSeconds: 5 },
        limits: {
            connectionsPerAddress: settings.connectionsPerAddress,
            totalSockets: socketCeiling(settings, host),
            largeHeaderBuffers: { count: 4, sizeKiB: 8 },
            clientHeaderTimeoutSeconds: 10,
        },
        workers: { ...host.workers, shutdownTimeoutSeconds: settings.drainTimeoutSeconds },
        paths: host.paths,
    };
}

/**
 * What the edge admits at once: the host's ceiling (its memory), lowered by the `maxSockets`
 * setting when that is smaller; a host without a ceiling (the local stack) takes the setting.
 */
export function socketCeiling(settings: Pick<EdgeSettings, "maxSockets">, host: Pick<EdgeHostProfile, "maxSockets">): number | undefined {
    const limits = [host.maxSockets, settings.maxSockets || undefined].filter((n): n is number => n !== undefined);
    return limits.length === 0 ? undefined : Math.min(...limits);
}

function affinityOf(settings: EdgeSettings): EdgeConfigSpec["affinity"] {
    if (settings.affinity === "cookie")
        return { kind: "cookie", cookieName: settings.affinityCookieName, maxAgeSeconds: settings.affinityCookieMaxAgeSeconds };
    if (settings.affinity.startsWith("query:")) return { kind: "query", parameter: settings.affinity.slice("query:".length) };
    return { kind: "client-address" };
}

/** The setting's origins; none given means the edge's own (each of its names, on its port). */
function allowedOriginsOf(settings: EdgeSettings, serverNames: readonly string[], port: number): EdgeConfigSpec["allowedOrigins"] {
    if (settings.allowedOrigins.includes("*")) return "any";
    if (settings.allowedOrigins.length > 0) return settings.allowedOrigins;
    return serverNames.map((name) => `https://${name}${port === 443 ? "" : `:${port}`}`);
}

/**
 * How often a backend pings each client: well inside the idle timeout, so that a live
 * socket never reaches it, and at most every 30 s.
 */
export function backendPingIntervalSeconds(settings: Pick<EdgeSettings, "idleTimeoutSeconds">): number {
    return Math.max(1, Math.min(30, Math.floor(settings.idleTimeoutSeconds / 3)));
}
