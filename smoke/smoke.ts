/**
 * Smoke test for a running edge, local or deployed:
 *
 *   npm run smoke -- <wss-url> [--ca <pem>] [--reconnects N] [--address IP]
 *
 * --address connects to IP instead of resolving the URL's host, which still names the edge (SNI, Host).
 *
 * Connects, checks the 101 upgrade and the backend's hello, does an echo round trip, then
 * reconnects N times and checks that each lands on the same backend (ip_hash stickiness).
 * Exits 0 when everything held, 1 otherwise.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { parseArgs } from "node:util";
import { close, connect, echo } from "./edgeClient";

interface Check {
    readonly name: string;
    readonly ok: boolean;
    readonly detail: string;
}

async function main(argv: string[]): Promise<number> {
    const { values, positionals } = parseArgs({
        args: argv,
        allowPositionals: true,
        options: {
            ca: { type: "string" },
            reconnects: { type: "string", default: "5" },
            address: { type: "string" },
            help: { type: "boolean", short: "h" },
        },
    });
    if (values.help || positionals.length !== 1) {
        console.error("usage: npm run smoke -- <wss-url> [--ca <pem>] [--reconnects N] [--address IP]");
        return values.help ? 0 : 2;
    }
    const url = positionals[0];
    if (!/^wss:\/\//.test(url)) {
        console.error(`smoke: ${JSON.stringify(url)} is not a wss:// URL`);
        return 2;
    }
    const reconnects = Number(values.reconnects);
    if (!Number.isInteger(reconnects) || reconnects < 0 || reconnects > 1000) {
        console.error(`smoke: --reconnects ${JSON.stringify(values.reconnects)} must be a whole number from 0 to 1000`);
        return 2;
    }
    let ca: Buffer | undefined;
    if (values.ca) {
        try {
            ca = readFileSync(values.ca);
        } catch (error) {
            console.error(`smoke: cannot read --ca ${values.ca}: ${(error as Error).message}`);
            return 2;
        }
    }

    const checks: Check[] = [];
    const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
    const started = Date.now();
    let hint: string | undefined;
    try {
        const first = await connect(url, { ca, address: values.address });
        check(
            "upgrade",
            first.upgrade.statusCode === 101,
            `HTTP ${first.upgrade.statusCode} ${first.upgrade.headers.upgrade ?? ""}`.trim(),
        );
        check("hello", true, `backend ${first.hello.backend}, saw X-Forwarded-For ${first.hello.headers["x-forwarded-for"] ?? "(none)"}`);
        const text = `smoke ${Date.now()}`;
        const echoed = await echo(first.socket, text);
        check("echo", echoed.toString() === text, `${Buffer.byteLength(text)} bytes round trip`);
        await close(first.socket);

        const landed: string[] = [];
        for (let i = 0; i < reconnects; i++) {
            const again = await connect(url, { ca, address: values.address });
            landed.push(again.hello.backend);
            await close(again.socket);
        }
        if (reconnects > 0) {
            const moved = landed.filter((b) => b !== first.hello.backend);
            check(
                "sticky",
                moved.length === 0,
                moved.length === 0 ? `${reconnects} reconnects, all on ${first.hello.backend}` : `landed on ${landed.join(", ")}`,
            );
        }
    } catch (error) {
        check("connect", false, (error as Error).message);
        hint = connectHint(error as NodeJS.ErrnoException, url, ca !== undefined);
    }

    const width = Math.max(...checks.map((c) => c.name.length));
    console.log(`smoke ${url} (${Date.now() - started} ms)`);
    for (const c of checks) console.log(`  ${c.ok ? "ok  " : "FAIL"} ${c.name.padEnd(width)}  ${c.detail}`);
    if (hint) console.log(`hint: ${hint}`);
    const failed = checks.filter((c) => !c.ok).length;
    console.log(failed === 0 ? "smoke passed" : `smoke failed: ${failed} check(s)`);
    return failed === 0 ? 0 : 1;
}

/** What to do about a failed connection, when its cause is one a user commonly meets. */
function connectHint(error: NodeJS.ErrnoException, url: string, caGiven: boolean): string | undefined {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
    const text = `${error.code ?? ""} ${error.message}`;
    if (isIP(host) && /UNRECOGNIZED_NAME|unrecognized name|alert number 112|alert internal error|alert number 80/i.test(text)) {
        return `the edge refuses handshakes for names it does not serve, and a client that dials an IP address sends none: connect by the edge's name (its endpoint output, e.g. wss://localhost:${new URL(url).port || 443}/)`;
    }
    if (
        /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_UNTRUSTED/.test(
            text,
        )
    ) {
        return caGiven
            ? "the edge's certificate does not chain to the --ca given: pass this stack's caCertificatePem"
            : "the edge's certificate comes from the stack's own CA: pass --ca <caCertificatePem> (npm start prints its path; on AWS: pulumi stack output caCertificatePem > edge-ca.pem)";
    }
    if (/ERR_TLS_CERT_ALTNAME_INVALID/.test(text))
        return `the edge's certificate does not name ${host}: use the host name of its endpoint output`;
    return undefined;
}

main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error) => {
        console.error(`smoke: ${(error as Error).message}`);
        process.exit(1);
    },
);
