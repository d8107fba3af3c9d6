/**
 * The proxy platform's NGINX on this machine, so the local stack, the bench and the tests run the
 * NGINX and OpenSSL the setting names. This machine is Debian 12: debian-12 is its own NGINX.
 * Debian 13's (NGINX 1.26, OpenSSL 3.5) is unpacked from Debian's archive (local/debianArchive.ts)
 * and runs with Debian 13's own loader and libraries: a copy of the binary names that loader as
 * its interpreter, and a wrapper gives it the libraries. NGINX then runs as itself, so its master
 * shows as "nginx: master process" (which the stack's stop checks) and every script that takes an
 * NGINX binary (NGINX_BIN) takes the wrapper unchanged.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ProxyPlatform } from "../settings/settingsTable";
import { trixiePackages } from "./debianArchive";

/** Debian 13's NGINX with what it links, and Debian 13's openssl command (a client that offers X25519MLKEM768). */
const trixieNginxPackages = ["nginx", "libc6", "libgcc-s1", "libcrypt1", "libpcre2-8-0", "libssl3t64", "libzstd1", "zlib1g", "openssl"];
const interpreter = "/lib64/ld-linux-x86-64.so.2";
/** A link to Debian 13's loader whose path is no longer than the one it replaces in the binary's header. */
const trixieInterpreter = "/var/tmp/wss-edge-ld13.so.2";

/** A copy of Debian 13's `binary` that Debian 13's loader runs, made once. */
function trixieBinary(root: string, binary: string): string {
    const copy = `${join(root, binary)}.wss-edge`;
    if (existsSync(copy)) return copy;
    if (!existsSync(trixieInterpreter)) symlinkSync(join(root, "usr/lib64/ld-linux-x86-64.so.2"), trixieInterpreter);
    const image = readFileSync(join(root, binary));
    const at = image.indexOf(Buffer.from(`${interpreter}\0`));
    if (at < 0) throw new Error(`Debian 13's ${binary} does not name ${interpreter} as its interpreter`);
    Buffer.from(`${trixieInterpreter}\0`.padEnd(interpreter.length + 1, "\0")).copy(image, at);
    writeFileSync(copy, image, { mode: 0o755 });
    return copy;
}

function trixieCommand(binary: string, wrapperDir: string, name: string): string {
    const root = trixiePackages("nginx", trixieNginxPackages);
    const wrapper = join(wrapperDir, name);
    if (!existsSync(wrapper)) {
        const program = trixieBinary(root, binary);
        mkdirSync(wrapperDir, { recursive: true });
        writeFileSync(wrapper, `#!/bin/sh\nLD_LIBRARY_PATH=${root}/usr/lib/x86_64-linux-gnu exec ${program} "$@"\n`, { mode: 0o755 });
    }
    return wrapper;
}

/**
 * The NGINX of `platform` as a program and the arguments that come before NGINX's own, for a tool
 * that runs it itself in one process (valgrind follows a program, not a wrapper's exec, and the
 * library path must reach NGINX, not the tool): Debian 13's loader, given the libraries.
 */
export function nginxProgram(platform: ProxyPlatform): { readonly path: string; readonly args: readonly string[] } {
    if (platform === "debian-12") return { path: "nginx", args: [] };
    const root = trixiePackages("nginx", trixieNginxPackages);
    return {
        path: join(root, "usr/lib64/ld-linux-x86-64.so.2"),
        args: ["--library-path", join(root, "usr/lib/x86_64-linux-gnu"), join(root, "usr/sbin/nginx")],
    };
}

/** The NGINX binary (or its wrapper, kept in `wrapperDir`) of `platform`. */
export function nginxOf(platform: ProxyPlatform, wrapperDir: string): string {
    return platform === "debian-12" ? "nginx" : trixieCommand("usr/sbin/nginx", wrapperDir, "nginx-debian-13");
}

/** The openssl command of `platform` (Debian 13's offers the post-quantum hybrid group). */
export function opensslOf(platform: ProxyPlatform, wrapperDir: string): string {
    return platform === "debian-12" ? "openssl" : trixieCommand("usr/bin/openssl", wrapperDir, "openssl-debian-13");
}
