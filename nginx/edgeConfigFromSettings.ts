import { edgeTlsFiles } from "../pki/certificateLayout";
import { backendServerName } from "../pki/pkiSpec";
import { EdgeSettings } from "../settings/edgeSettings";
import { EdgeConfigSpec, UpstreamServer } from "./edgeConfigSpec";
import { isIpLiteral } from "./renderNginxConfig";
import { tlsPolicies } from "./tlsPolicy";

/** What differs between the machines the edge runs on: ports, process limits, file places. */
export interface EdgeHostProfile {
    readonly listen: EdgeConfigSpec["listen"];
    /** Port of the HTTP-to-HTTPS redirect, where the host offers one. */
    readonly httpRedirectPort?: number;
    readonly workers: Omit<EdgeConfigSpec["workers"], "shutdownTimeoutSeconds">;
    readonly paths: EdgeConfigSpec["paths"];
}

/**
 * The proxy VM: NGINX from the distribution, run by systemd as root. 65,536 connections
 * per worker is 32,768 WebSockets per core; the descriptor limit leaves room beyond that.
 */
export const awsProxyHost: EdgeHostProfile = {
    listen: { port: 443, ipv6: true },
    httpRedirectPort: 80,
    workers: { user: "www-data", processes: "auto", connections: 65536, fileLimit: 140000 },
    paths: { pidFile: "/run/nginx.pid", errorLog: "/var/log/nginx/error.log", accessLog: "/var/log/nginx/access.log" },
};

/** Upstream failure accounting: 3 failures in 10 s take a backend out for 10 s. */
const upstreamHealth = { maxFails: 3, failTimeoutSeconds: 10 };

/** The renderer's spec for an edge in front of `backends`, on `host`. */
export function edgeConfigSpec(settings: EdgeSettings, backends: readonly UpstreamServer[], host: EdgeHostProfile, serverNames: readonly string[]): EdgeConfigSpec {
    return {
        serverNames,
        rejectUnknownNames: serverNames.every((name) => !isIpLiteral(name)),
        listen: host.listen,
        httpRedirectPort: settings.httpRedirect ? host.httpRedirectPort : undefined,
        tls: {
            policy: tlsPolicies[settings.tlsPolicy],
            certificate: edgeTlsFiles.certificate,
            certificateKey: edgeTlsFiles.certificateKey,
            sessionCacheMiB: 20,
        },
        upstream: { servers: backends, ...upstreamHealth },
        backendTls: {
            trustedCertificate: edgeTlsFiles.backendCa,
            serverName: backendServerName,
            clientCertificate: edgeTlsFiles.proxyClientCertificate,
            clientCertificateKey: edgeTlsFiles.proxyClientKey,
            protocol: settings.backendTlsProtocol,
        },
        timeouts: { idleSeconds: settings.idleTimeoutSeconds, connectSeconds: 5 },
        limits: {
            connectionsPerAddress: settings.connectionsPerAddress,
            largeHeaderBuffers: { count: 4, sizeKiB: 8 },
            clientHeaderTimeoutSeconds: 10,
        },
        workers: { ...host.workers, shutdownTimeoutSeconds: settings.drainTimeoutSeconds },
        paths: host.paths,
    };
}

/**
 * How often a backend pings each client: well inside the idle timeout, so that a live
 * socket never reaches it, and at most every 30 s.
 */
export function backendPingIntervalSeconds(settings: Pick<EdgeSettings, "idleTimeoutSeconds">): number {
    return Math.max(1, Math.min(30, Math.floor(settings.idleTimeoutSeconds / 3)));
}
