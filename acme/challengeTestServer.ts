/**
 * DNS-01 through `pebble-challtestsrv`, Pebble's companion DNS server: its management API holds
 * the TXT records that Pebble's validation queries (`pebble -dnsserver`). Here it stands in for
 * Route 53, as Pebble stands in for Let's Encrypt.
 */
import type { Dns01 } from "./certificateIssuer";

export class ChallengeTestServerDns implements Dns01 {
    /** `managementUrl`: the server's management listener, e.g. http://127.0.0.1:8055. */
    constructor(private readonly managementUrl: string) {}

    set(name: string, value: string): Promise<void> {
        return this.post("/set-txt", { host: `${name}.`, value });
    }

    clear(name: string): Promise<void> {
        return this.post("/clear-txt", { host: `${name}.` });
    }

    private async post(path: string, body: Record<string, string>): Promise<void> {
        const response = await fetch(new URL(path, this.managementUrl), { method: "POST", body: JSON.stringify(body) });
        if (!response.ok) throw new Error(`pebble-challtestsrv ${path}: HTTP ${response.status} ${await response.text()}`);
    }
}
