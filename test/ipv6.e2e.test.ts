// IPv6 clients, over ::1: the edge answers them on IPv6 as it does on AWS when dual-stack (the
// proxy itself, or the front standing in for a dual-stack balancer, whose PROXY header carries the
// IPv6 address), passes their address on, and keeps them on one backend: the one NGINX's ip_hash
// gives for all 16 bytes of the address, as backend/upstreamHash.mjs computes it.
import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import type { LocalStack } from "../local/localStack";
import { close } from "../smoke/edgeClient";
import { connectToEdge, startTestEdge } from "./support/localEdge";

/** backend/upstreamHash.mjs: plain JavaScript without declarations, so imported by path and typed here. */
const upstreamHash = import(pathToFileURL(join(__dirname, "..", "backend", "upstreamHash.mjs")).href) as Promise<{
    ipHashIndex(address: string, serverCount: number): number;
}>;

/** Connects `times` times over `address`, and gives each session's backend and the client address it saw. */
async function landings(
    stack: LocalStack,
    address: string,
    times: number,
): Promise<{ backend: string; realIp: string; forwardedFor: string }[]> {
    const seen = [];
    for (let n = 0; n < times; n++) {
        const { socket, hello } = await connectToEdge(stack, { address });
        await close(socket);
        seen.push({ backend: hello.backend, realIp: hello.headers["x-real-ip"], forwardedFor: hello.headers["x-forwarded-for"] });
    }
    return seen;
}

/** The local stack answers on ::1 only where the machine has it (a container may run without IPv6). */
const hasIpv6Loopback = Object.values(networkInterfaces()).some((addresses) => addresses?.some((a) => a.address === "::1"));

for (const proxyCount of [1, 2]) {
    const name = `IPv6 clients over ::1, ${proxyCount === 1 ? "one proxy" : "two proxies behind the front"}`;
    describe(name, { skip: hasIpv6Loopback ? false : "this machine has no IPv6 loopback (::1)" }, async () => {
        const stack = await startTestEdge({ settings: { proxyCount: String(proxyCount) } });

        it("passes the client's IPv6 address to the backend, and keeps it on the backend ip_hash gives ::1", async () => {
            const seen = await landings(stack, "::1", 8);
            for (const session of seen) {
                assert.equal(session.realIp, "::1");
                assert.equal(session.forwardedFor, "::1");
            }
            const { ipHashIndex } = await upstreamHash;
            assert.deepEqual(new Set(seen.map((s) => s.backend)), new Set([`backend-${ipHashIndex("::1", 3) + 1}`]));
        });

        it("still answers IPv4 clients on the same port", async () => {
            const [session] = await landings(stack, "127.0.0.1", 1);
            assert.equal(session.realIp, "127.0.0.1");
        });
    });
}
