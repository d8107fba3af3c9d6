import { edgeTlsFiles } from "../pki/certificateLayout";
import { backendServerName } from "../pki/pkiSpec";
import { socketCeiling } from "../plan/capacity";
import { isIpLiteral } from "../settings/addresses";
import type { EdgeSettings } from "../settings/edgeSettings";
import type { EdgeConfigSpec, UpstreamServer } from "./edgeConfigSpec";
import { tlsPolicyFor } from "./tlsPolicy";

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

/** Upstream failure accounting: 3 failures in 10 s take a backend out for 10 s. */
const upstreamHealth = { maxFails: 3, failTimeoutSeconds: 10 };

/**
 * The renderer's spec for an edge in front of `backends`, on `host`, reached by clients at
 * `serverNames` on `publicPort` (the listen port, unless a front on another port is in between).
 */
export function edgeConfigSpec(
    settings: EdgeSettings,
    backends: readonly UpstreamServer[],
    host: EdgeHostProfile,
    serverNames: readonly string[],
    publicPort: number = host.listen.port,
): EdgeConfigSpec {
    return {
        serverNames,
        publicPort: publicPort === host.listen.port ? undefined : publicPort,
        rejectUnknownNames: serverNames.every((name) => !isIpLiteral(name)),
        listen: host.listen,
        httpRedirectPort: settings.httpRedirect ? host.httpRedirectPort : undefined,
        statusListen: host.statusListen,
        tls: {
            policy: tlsPolicyFor(settings.tlsPolicy, settings.proxyPlatform),
            certificate: edgeTlsFiles.certificate,
            certificateKey: edgeTlsFiles.certificateKey,
            sessionCacheMiB: 20,
        },
        upstream: { servers: backends, ...upstreamHealth },
        affinity: affinityOf(settings),
        allowedOrigins: allowedOriginsOf(settings, serverNames, publicPort),
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
