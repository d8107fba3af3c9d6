import { isIPv6 } from "node:net";
import type { EdgeConfigSpec } from "../edgeConfigSpec";
import { affinityCookieHeader } from "./affinity";
import { connectionLimits } from "./httpContext";
import { locations } from "./locations";
import { RenderError, type ValueGuard } from "./valueGuard";

/** The servers: one refusing unknown names (when the edge has names), the edge itself, and the HTTP redirect. */
export function servers(v: ValueGuard, spec: EdgeConfigSpec): string[] {
    if (spec.serverNames.length === 0) throw new RenderError("serverNames", "[]", "at least one name");
    const address = spec.listen.address === undefined ? "" : `${v.address("listen.address", spec.listen.address)}:`;
    const port = v.port("listen.port", spec.listen.port);
    const ipv6 = ipv6Listen(v, spec);
    return [
        ...unknownNameServer(spec, address, ipv6, port),
        "    server {",
        ...tlsListen(spec, address, ipv6, port, !spec.rejectUnknownNames),
        "        # No http2 here: NGINX 1.22 cannot carry WebSockets over HTTP/2, and a client",
        "        # that negotiated h2 through ALPN could not upgrade.",
        `        server_name ${spec.serverNames.map((n) => v.serverName("serverNames", n)).join(" ")};`,
        "",
        `        ssl_certificate ${v.path("tls.certificate", spec.tls.certificate)};`,
        `        ssl_certificate_key ${v.path("tls.certificateKey", spec.tls.certificateKey)};`,
        `        add_header Strict-Transport-Security "max-age=${v.positiveInt("tls.policy.hstsMaxAgeSeconds", spec.tls.policy.hstsMaxAgeSeconds)}" always;`,
        ...affinityCookieHeader(spec),
        ...connectionLimits(v, spec),
        "",
        ...locations(v, spec),
        "    }",
        ...httpRedirectServer(v, address, spec.httpRedirectPort, ipv6, v.port("publicPort", spec.publicPort ?? port), proxyProtocol(spec)),
        ...statusServer(v, spec.statusListen),
    ];
}

/**
 * The TLS listen lines. The first server on a port carries its options: `default_server`, and
 * `reuseport`, so the kernel spreads connections evenly over the workers.
 */
function tlsListen(spec: EdgeConfigSpec, address: string, ipv6: string | undefined, port: number, first: boolean): string[] {
    const options = `${proxyProtocol(spec)}${first ? " default_server reuseport" : ""}`;
    return [`        listen ${address}${port} ssl${options};`, ...(ipv6 ? [`        listen ${ipv6}:${port} ssl${options};`] : [])];
}

/** The IPv6 address the listeners bind beside the IPv4 one: all of IPv6, or the one given; none otherwise. */
function ipv6Listen(v: ValueGuard, spec: EdgeConfigSpec): string | undefined {
    if (spec.listen.ipv6Address !== undefined) {
        const address = v.address("listen.ipv6Address", spec.listen.ipv6Address);
        if (!isIPv6(address)) throw new RenderError("listen.ipv6Address", address, "an IPv6 address");
        return `[${address}]`;
    }
    return spec.listen.ipv6 && spec.listen.address === undefined ? "[::]" : undefined;
}

const proxyProtocol = (spec: EdgeConfigSpec) => (spec.listen.proxyProtocolFrom === undefined ? "" : " proxy_protocol");

function unknownNameServer(spec: EdgeConfigSpec, address: string, ipv6: string | undefined, port: number): string[] {
    if (!spec.rejectUnknownNames) return [];
    return [
        "    # Handshakes naming no host of this edge (scanners, misdirected clients) are refused",
        "    # before any certificate is shown; a request whose Host is not this edge's, on a",
        "    # connection made for one of its names, is refused too.",
        "    server {",
        ...tlsListen(spec, address, ipv6, port, true),
        "        ssl_reject_handshake on;",
        "        return 421;",
        "    }",
        "",
    ];
}

/** stub_status for the metrics exporter beside NGINX: on loopback only, nothing else there. */
function statusServer(v: ValueGuard, status: EdgeConfigSpec["statusListen"]): string[] {
    if (status === undefined) return [];
    if (!/^127\./.test(status.address)) throw new RenderError("statusListen.address", status.address, "a loopback address (127.x.y.z)");
    return [
        "",
        "    # Connection counts for the metrics exporter on this host; loopback only.",
        "    server {",
        `        listen ${v.address("statusListen.address", status.address)}:${v.port("statusListen.port", status.port)};`,
        "        access_log off;",
        "        location = /stub_status {",
        "            stub_status;",
        "        }",
        "        location / {",
        "            return 404;",
        "        }",
        "    }",
    ];
}

function httpRedirectServer(
    v: ValueGuard,
    address: string,
    port: number | undefined,
    ipv6: string | undefined,
    tlsPort: number,
    options: string,
): string[] {
    if (port === undefined) return [];
    const p = v.port("httpRedirectPort", port);
    const target = tlsPort === 443 ? "https://$host$request_uri" : `https://$host:${tlsPort}$request_uri`;
    return [
        "",
        "    # Plain HTTP only ever redirects to the TLS listener.",
        "    server {",
        `        listen ${address}${p}${options};`,
        ...(ipv6 ? [`        listen ${ipv6}:${p}${options};`] : []),
        `        return 301 ${target};`,
        "    }",
    ];
}
