/**
 * Renders cloud-init user data (`#cloud-config`) for the stack's hosts. Only the few modules
 * used here, each written as YAML block scalars so that keys and scripts keep their bytes.
 */
export interface SshHostKey {
    /** OpenSSH-format ED25519 private key. */
    readonly privateKeyOpenssh: string;
    /** `ssh-ed25519 AAAA…`, what the deploy pins. */
    readonly publicKeyOpenssh: string;
}

export interface CloudConfig {
    /** One line saying what this host is; written as a YAML comment. */
    readonly purpose: string;
    /**
     * A host SSH key to preset (cloud-init's ssh module writes it before sshd first starts), for
     * a host reached over SSH with its key pinned. The stack's VMs are reached by Systems Manager
     * only and have none.
     */
    readonly hostKey?: SshHostKey;
    readonly packages?: readonly string[];
    readonly files?: readonly { readonly path: string; readonly permissions: string; readonly content: string }[];
    /** Commands run once, at the end of first boot; a failure marks the boot as failed. */
    readonly runcmd: readonly (readonly string[])[];
}

export function renderCloudConfig(config: CloudConfig): string {
    return [
        "#cloud-config",
        `# ${config.purpose.replace(/\n/g, " ")}`,
        ...(config.hostKey
            ? [
                  "ssh_deletekeys: true",
                  "ssh_keys:",
                  "  ed25519_private: |",
                  literalBlock(config.hostKey.privateKeyOpenssh, 4),
                  `  ed25519_public: ${JSON.stringify(config.hostKey.publicKeyOpenssh.trim())}`,
              ]
            : []),
        ...(config.packages && config.packages.length > 0
            ? ["package_update: true", "packages:", ...config.packages.map((p) => `  - ${JSON.stringify(p)}`)]
            : []),
        ...(config.files && config.files.length > 0 ? ["write_files:"] : []),
        ...(config.files ?? []).flatMap((file) => [
            `  - path: ${JSON.stringify(file.path)}`,
            `    permissions: ${JSON.stringify(file.permissions)}`,
            "    content: |",
            literalBlock(file.content, 6),
        ]),
        "runcmd:",
        ...config.runcmd.map((argv) => `  - [${argv.map((a) => JSON.stringify(a)).join(", ")}]`),
        "",
    ].join("\n");
}

/** A YAML literal block (`|`): every line indented, the text's own bytes kept. */
function literalBlock(text: string, indent: number): string {
    const pad = " ".repeat(indent);
    return text
        .replace(/\n$/, "")
        .split("\n")
        .map((line) => (line === "" ? "" : pad + line))
        .join("\n");
}
