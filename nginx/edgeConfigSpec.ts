import type { BackendTlsProtocol, TlsPolicy } from "./tlsPolicy";

/** One backend the edge proxies to. `address` is an IP literal or a host name. */
export interface UpstreamServer {
    readonly address: string;
    readonly port: number;
}

/**
 * Everything the renderer needs to write the edge's nginx.conf. File paths may be
 * relative: NGINX resolves them against the directory of the config file, which is what
 * lets the deploy script test a staged release in place before swapping it in.
 */
export interface EdgeConfigSpec {
    /** Names the edge answers to (server_name). At least one. */
    readonly serverNames: readonly string[];
    /**
     * Refuse TLS handshakes for any other name, and without SNI. Right when the edge has DNS
     * names; wrong when clients reach it by IP address, since they send no SNI then.
     */
    readonly rejectUnknownNames: boolean;
    /** Where the TLS listener binds. `address` omitted means all IPv4 (and IPv6 when `ipv6`). */
    readonly listen: {
        readonly port: number;
        readonly address?: string;
        readonly ipv6: boolean;
        /** With `address`: an IPv6 address to listen on beside it (the local stack's ::1 beside 127.0.0.1). */
        readonly ipv6Address?: string;
        /**
         * Behind a load balancer: every connection on the public listeners starts with a PROXY
         * protocol header, and the client address it carries is believed only when the
         * connection comes from one of these addresses (the load balancer's side). Omitted: no
         * PROXY protocol, the peer is the client.
         */
        readonly proxyProtocolFrom?: readonly string[];
    };
    /** NGINX's stub_status, for the metrics exporter on the same host; omitted means none. */
    readonly statusListen?: { readonly address: string; readonly port: number };
    /** Plain-HTTP listener that only redirects to HTTPS; omitted means none. */
    readonly httpRedirectPort?: number;
    /** The port clients reach the edge at, where it is not the listen port (behind a front on another port): the redirect's target. */
    readonly publicPort?: number;

    readonly tls: {
        readonly policy: TlsPolicy;
        readonly certificate: string;
        readonly certificateKey: string;
        /** Size of the shared TLS session cache in MiB (about 4,000 sessions per MiB). */
        readonly sessionCacheMiB: number;
    };

    readonly upstream: {
        /** Every backend, in the order the renderer writes them. At least one. */
        readonly servers: readonly UpstreamServer[];
        /** Failed attempts within `failTimeoutSeconds` that take a backend out for that long. */
        readonly maxFails: number;
        readonly failTimeoutSeconds: number;
    };

    /** Re-encryption to the backends with mutual TLS. */
    readonly backendTls: {
        /** CA bundle the backends' certificates must chain to. */
        readonly trustedCertificate: string;
        /** Name the backends' certificates must carry; also sent as SNI. */
        readonly serverName: string;
        /** Certificate and key the proxy presents to the backends. */
        readonly clientCertificate: string;
        readonly clientCertificateKey: string;
        /** One protocol, so that every backend connection behaves the same way (see `backendTlsProtocols`). */
        readonly protocol: BackendTlsProtocol;
    };

    /**
     * KiB of each of the two buffers an upgraded socket keeps, one per direction
     * (proxy_buffer_size): memory per socket against TLS records per large message.
     */
    readonly tunnelBufferKiB: number;

    readonly timeouts: {
        /** How long a socket may go without the backend sending anything (its pings count). */
        readonly idleSeconds: number;
        /** Connect and TLS handshake with a backend. */
        readonly connectSeconds: number;
    };

    /** Which backend a socket goes to (see `affinity` in the settings table). */
    readonly affinity:
        | { readonly kind: "client-address" }
        | { readonly kind: "cookie"; readonly cookieName: string; readonly maxAgeSeconds: number }
        | { readonly kind: "query"; readonly parameter: string };

    /** Origins whose pages may open sockets (exact, as browsers send them), or "any". */
    readonly allowedOrigins: readonly string[] | "any";

    readonly limits: {
        /** Concurrent connections one client address may hold (limit_conn); 0 disables the limit. */
        readonly connectionsPerAddress: number;
        /** Sockets the whole edge admits at once (limit_conn across workers); omitted means no such limit. */
        readonly totalSockets?: number;
        /** Buffers for request headers: count and size of the large buffers, in KiB. */
        readonly largeHeaderBuffers: { readonly count: number; readonly sizeKiB: number };
        /** Time a client has to send its request headers. */
        readonly clientHeaderTimeoutSeconds: number;
    };

    readonly workers: {
        /** Unprivileged user the workers run as when the master runs as root; omitted for a non-root master. */
        readonly user?: string;
        readonly processes: number | "auto";
        /** Connections per worker; each proxied socket uses two (client side and backend side). */
        readonly connections: number;
        /** File descriptors per worker; must cover `connections` plus files and logs. */
        readonly fileLimit: number;
        /** How long a worker retired by a reload keeps its sockets before closing them. */
        readonly shutdownTimeoutSeconds: number;
    };

    readonly paths: {
        readonly pidFile: string;
        readonly errorLog: string;
        readonly accessLog: string;
        /** Directory for NGINX's temp files; omitted means the compiled-in default (needs root). */
        readonly tempDir?: string;
    };
}
