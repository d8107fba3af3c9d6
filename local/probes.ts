/** What the local stack asks its edge and its backends, over TLS. */
import { get as httpGet, type IncomingHttpHeaders } from "node:http";
import { request } from "node:https";
import { connect as tlsConnect } from "node:tls";

export interface TlsClientOptions {
    readonly ca: string;
    readonly cert?: string;
    readonly key?: string;
    readonly servername: string;
}

/** GET over HTTPS; undefined when the server is unreachable or the handshake fails. */
export function httpsGet(
    host: string,
    port: number,
    path: string,
    tls: TlsClientOptions,
    options: { readonly headers?: Record<string, string>; readonly localAddress?: string } = {},
): Promise<{ status: number; body: string; headers: IncomingHttpHeaders } | undefined> {
    return new Promise((done) => {
        // Host as a client of the endpoint sends it: the edge answers only for its own names.
        const headers = { host: tls.servername, ...options.headers };
        const req = request(
            { host, port, path, ...tls, headers, localAddress: options.localAddress, agent: false, timeout: 2000 },
            (res) => {
                let body = "";
                res.on("data", (d) => (body += d));
                res.on("end", () => done({ status: res.statusCode ?? 0, body, headers: res.headers }));
            },
        );
        req.on("error", () => done(undefined));
        req.on("timeout", () => req.destroy());
        req.end();
    });
}

/** SHA-256 fingerprint of the certificate a TLS server presents now; undefined if the handshake fails. */
export function peerCertificateFingerprint(host: string, port: number, tls: TlsClientOptions): Promise<string | undefined> {
    return new Promise((done) => {
        const socket = tlsConnect({ host, port, ...tls });
        socket.setTimeout(2000, () => socket.destroy());
        socket.once("secureConnect", () => {
            done(socket.getPeerX509Certificate()?.fingerprint256);
            socket.destroy();
        });
        socket.once("error", () => done(undefined));
        socket.once("close", () => done(undefined));
    });
}

/** A plain-HTTP GET's body (metrics on loopback); undefined when nothing answers. */
export function httpGetText(url: string): Promise<string | undefined> {
    return new Promise((done) => {
        const request = httpGet(url, { timeout: 2000 }, (response) => {
            let body = "";
            response.on("data", (d) => (body += d));
            response.on("end", () => done(response.statusCode === 200 ? body : undefined));
        });
        request.on("error", () => done(undefined));
        request.on("timeout", () => request.destroy());
    });
}
