import { isIP } from "node:net";

/** Host names, IP literals and CIDR blocks as the settings, the renderer and the guardrails accept them. */

export function isHostName(name: string): boolean {
    if (name.length === 0 || name.length > 253) return false;
    return name.split(".").every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}

export function isIpLiteral(a: string): boolean {
    return isIP(a) !== 0;
}

/** Why `cidr` is not a canonical IPv4 or IPv6 CIDR block, or undefined if it is one. */
export function cidrProblem(cidr: string): string | undefined {
    const match = /^([0-9A-Fa-f:.]+)\/([0-9]{1,3})$/.exec(cidr);
    const family = match ? isIP(match[1]) : 0;
    if (!match || family === 0) return "is not a CIDR block such as 203.0.113.0/24 or 2001:db8::/32";
    if (family === 6 && match[1].includes(".")) return "uses embedded IPv4 notation; write the IPv6 address in hex";
    const prefix = Number(match[2]);
    const bits = family === 4 ? 32 : 128;
    if (prefix > bits) return `has a prefix length above ${bits}`;
    const address = family === 4 ? ipv4ToBigInt(match[1]) : ipv6ToBigInt(match[1]);
    const hostMask = (1n << BigInt(bits - prefix)) - 1n;
    if ((address & hostMask) !== 0n) {
        const network = address & ~hostMask;
        const shown = family === 4 ? bigIntToIpv4(network) : `${match[1]} with the last ${bits - prefix} bits cleared`;
        return `has host bits set; did you mean ${shown}/${prefix}?`;
    }
    return undefined;
}

function ipv4ToBigInt(a: string): bigint {
    return a.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function bigIntToIpv4(n: bigint): string {
    return [24n, 16n, 8n, 0n].map((shift) => String((n >> shift) & 255n)).join(".");
}

function ipv6ToBigInt(a: string): bigint {
    const [head, tail] = a.includes("::") ? a.split("::") : [a, undefined];
    const headGroups = head ? head.split(":") : [];
    const tailGroups = tail ? tail.split(":") : [];
    const groups =
        tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups];
    return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}
