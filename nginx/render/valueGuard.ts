import { cidrProblem, isHostName, isIpLiteral } from "../../settings/addresses";

export class RenderError extends Error {
    constructor(
        readonly field: string,
        readonly value: string,
        readonly rule: string,
    ) {
        super(`cannot render nginx.conf: ${field} = ${JSON.stringify(value)} is not ${rule}`);
        this.name = "RenderError";
    }
}

/** Checks each value against the shape its position in the config allows. */
export class ValueGuard {
    positiveInt(field: string, n: number): number {
        if (!Number.isSafeInteger(n) || n < 1) throw new RenderError(field, String(n), "a positive whole number");
        return n;
    }
    nonNegativeInt(field: string, n: number): number {
        if (!Number.isSafeInteger(n) || n < 0) throw new RenderError(field, String(n), "a whole number of 0 or more");
        return n;
    }
    port(field: string, n: number): number {
        if (!Number.isSafeInteger(n) || n < 1 || n > 65535) throw new RenderError(field, String(n), "a port from 1 to 65535");
        return n;
    }
    path(field: string, p: string): string {
        if (!/^[A-Za-z0-9_./-]+$/.test(p) || p.split("/").includes("..")) {
            throw new RenderError(field, p, "a path of letters, digits, '_', '.', '-' and '/' without '..'");
        }
        return p;
    }
    word(field: string, w: string): string {
        if (!/^[A-Za-z0-9_.-]+$/.test(w)) throw new RenderError(field, w, "a single word of letters, digits, '_', '.' and '-'");
        return w;
    }
    hostName(field: string, name: string): string {
        if (!isHostName(name)) throw new RenderError(field, name, "a DNS host name");
        return name;
    }
    /** server_name also takes a leading wildcard label. */
    serverName(field: string, name: string): string {
        if (!isHostName(name.startsWith("*.") ? name.slice(2) : name)) {
            throw new RenderError(field, name, "a DNS host name, optionally starting with '*.'");
        }
        return name;
    }
    /**
     * Text for a comment: one line of printable characters. A newline would end the comment and
     * let the rest be read as directives.
     */
    comment(field: string, text: string): string {
        if (!/^[\x20-\x7e\u00a0-\uffff]*$/u.test(text) || /[\u2028\u2029\u0085]/.test(text))
            throw new RenderError(field, text, "one line of printable text");
        return text;
    }
    /** The name part of an NGINX variable ($cookie_<name>, $arg_<name>). */
    variableName(field: string, name: string): string {
        if (!/^[A-Za-z0-9_]{1,32}$/.test(name)) throw new RenderError(field, name, "1 to 32 letters, digits or _");
        return name;
    }
    /** A web origin as a browser sends it: scheme, host (or `*.` and a domain), optional port. */
    origin(field: string, origin: string): string {
        const match = /^https?:\/\/(\*\.)?([A-Za-z0-9.-]+)(:[0-9]{1,5})?$/.exec(origin);
        if (!match || !isHostName(match[2]))
            throw new RenderError(field, origin, "an origin such as https://app.example.com or https://*.example.com");
        return origin;
    }
    /** An IP address or a canonical CIDR block (set_real_ip_from). */
    addressRange(field: string, range: string): string {
        if (!isIpLiteral(range) && cidrProblem(range) !== undefined)
            throw new RenderError(field, range, "an IP address or a CIDR block such as 10.0.0.0/16");
        return range;
    }
    address(field: string, a: string): string {
        if (!isIpLiteral(a) && !isHostName(a)) throw new RenderError(field, a, "an IP address or a DNS host name");
        return a;
    }
}
