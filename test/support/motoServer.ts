/**
 * moto's server (`python3 -m moto.server`), which speaks AWS's APIs on loopback, started for a
 * test file and stopped when it ends, whatever its outcome. Here it stands in for Route 53's API.
 * Undefined when this machine's Python has no moto.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { after } from "node:test";
import { freePort } from "../../local/ports";
import { terminate, waitUntil } from "../../local/processes";

export async function startMoto(): Promise<{ readonly endpoint: string } | undefined> {
    if (spawnSync("python3", ["-c", "import moto.server"], { stdio: "ignore" }).status !== 0) return undefined;
    const port = await freePort("127.0.0.1");
    const child: ChildProcess = spawn("python3", ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)], {
        stdio: ["ignore", "ignore", "ignore"],
    });
    after(() => terminate(child, "SIGTERM"));
    const endpoint = `http://127.0.0.1:${port}`;
    let exited = false;
    child.on("exit", () => (exited = true));
    await waitUntil(
        30_000,
        async () => {
            if (exited) throw new Error("moto's server exited at start");
            return fetch(`${endpoint}/moto-api/`).then(
                () => true,
                () => false,
            );
        },
        "moto's server did not answer",
    );
    return { endpoint };
}
