/**
 * The release channel: how a release reaches a VM with nothing listening for it. `pulumi up`
 * writes each release, content-addressed, to the stack's release store (S3, encrypted with the
 * stack's KMS key); Systems Manager runs the stack's documents on the VMs, which fetch and apply
 * it; and first boot applies the store's `current` release, so a VM that is new, replaced or
 * recovered serves on its own. The VM twin runs the same document commands against an
 * S3-compatible server on this machine.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { encodeDeployBundle, sha256 } from "../deploy/deployBundle";
import { inlineScript } from "./remoteScript";

/** Where the releases are, and how a VM reaches the store. */
export interface ReleaseStore {
    readonly bucket: string;
    readonly region: string;
    /** An S3-compatible endpoint instead of AWS's: the twin's store. */
    readonly endpointUrl?: string;
}

export type ReleaseKind = "edge" | "backend";

/** Each release's folder in the store: `<folder>/releases/<id>`, and `<folder>/current`. */
export const releaseFolders = {
    edge: "edge",
    backend: (name: string) => `backends/${name}`,
} as const;
/** What a backend's health gate presents (the stack's CA, the proxy's client certificate and key), readable by the proxies only. */
export const gateCredentialsKey = "edge/gate";

export const releaseKey = (folder: string, id: string) => `${folder}/releases/${id}`;
export const currentKey = (folder: string) => `${folder}/current`;
export const s3Url = (store: ReleaseStore, key: string) => `s3://${store.bucket}/${key}`;

const script = (name: string) => readFileSync(join(__dirname, "..", "deploy", name), "utf8");
export const applyReleaseScript = script("apply-release.sh");
const healthGateScript = script("backend-health-gate.sh");
const backendFleetScript = script("backend-fleet.sh");

/** The environment every store command gets: the region, and the endpoint when it is not AWS's. */
function storeEnvironment(store: ReleaseStore): string {
    return [`WSS_EDGE_REGION=${store.region}`, ...(store.endpointUrl ? [`WSS_EDGE_S3_ENDPOINT=${store.endpointUrl}`] : [])].join(" ");
}

/**
 * The command that applies release `release` (an id, `current`, or a document's `{{ Release }}`)
 * of `folder`: what first boot runs, and what the stack's documents run.
 */
export function applyReleaseCommand(
    store: ReleaseStore,
    kind: ReleaseKind,
    folder: string,
    release: string,
    deployEnvironment: Readonly<Record<string, string>> = {},
): string {
    const environment = [storeEnvironment(store), ...Object.entries(deployEnvironment).map(([k, v]) => `${k}=${v}`)].join(" ");
    return `env ${environment} ${inlineScript(applyReleaseScript, "apply-release", [kind, s3Url(store, folder), release])}`;
}

/**
 * Waits for first boot to finish, and fails with cloud-init's own account of it when it failed
 * (exit 1); exit 2 (newer cloud-init: finished, with recoverable errors) passes with its warnings.
 * Every document runs it first: a command can reach a VM that is still booting.
 */
export const waitForFirstBoot = [
    "rc=0; cloud-init status --wait >/dev/null 2>&1 || rc=$?",
    'if [ "$rc" -eq 2 ]; then cloud-init status --long >&2 || true; fi',
    'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then',
    '  echo "wss-edge: first boot of $(hostname) failed (cloud-init status exit $rc):" >&2',
    "  cloud-init status --long >&2 || true",
    "  tail -n 25 /var/log/cloud-init-output.log >&2 || true",
    "  exit 1",
    "fi",
].join("\n");

/**
 * A backend's health gate, run on a proxy: the credentials from the store into a file of their
 * own, then the gate script reading them. POSIX sh, as the agent runs a document's commands.
 */
export function healthGateCommand(
    store: ReleaseStore,
    args: { name: string; address: string; port: number | string; serverName: string; timeoutSeconds: number },
): string {
    const fetch = `aws ${store.endpointUrl ? `--endpoint-url ${store.endpointUrl} ` : ""}--region ${store.region} s3 cp --only-show-errors ${s3Url(store, gateCredentialsKey)} "$credentials"`;
    const gate = inlineScript(healthGateScript, "backend-health-gate", [
        args.name,
        args.address,
        args.port,
        args.serverName,
        args.timeoutSeconds,
    ]);
    return [
        "credentials=$(mktemp)",
        `if ! ${fetch}; then rm -f "$credentials"; echo "backend-health-gate: cannot read the gate's credentials from the store" >&2; exit 1; fi`,
        `rc=0; ${gate} <"$credentials" || rc=$?`,
        'rm -f "$credentials"',
        'exit "$rc"',
    ].join("\n");
}

/** An SSM command document (schema 2.2): parameters constrained by pattern, one shell step. */
export interface CommandDocument {
    readonly schemaVersion: "2.2";
    readonly description: string;
    readonly parameters: Record<string, { readonly type: "String"; readonly description: string; readonly allowedPattern: string }>;
    readonly mainSteps: readonly [
        {
            readonly action: "aws:runShellScript";
            readonly name: string;
            readonly inputs: { readonly runCommand: readonly string[]; readonly timeoutSeconds: string };
        },
    ];
}

const releaseParameter = {
    type: "String",
    description: "A release id (the SHA-256 of its bytes), or `current`",
    allowedPattern: "^([0-9a-f]{64}|current)$",
} as const;

function commandDocument(description: string, parameters: CommandDocument["parameters"], name: string, command: string): CommandDocument {
    return {
        schemaVersion: "2.2",
        description,
        parameters,
        mainSteps: [{ action: "aws:runShellScript", name, inputs: { runCommand: [waitForFirstBoot, command], timeoutSeconds: "1200" } }],
    };
}

/** The proxies' document: apply an edge release. */
export function edgeReleaseDocument(store: ReleaseStore, deployEnvironment: Readonly<Record<string, string>>): CommandDocument {
    return commandDocument(
        "wss-edge: apply an edge release from the release store (deploy-edge-config.sh: nginx -t, a reload that keeps open sockets, the health check)",
        { Release: releaseParameter },
        "applyEdgeRelease",
        applyReleaseCommand(store, "edge", releaseFolders.edge, "{{ Release }}", deployEnvironment),
    );
}

/** The backends' document: apply a backend's release (its folder named by the `Backend` parameter). */
export function backendReleaseDocument(store: ReleaseStore): CommandDocument {
    return commandDocument(
        "wss-edge: apply a backend release from the release store (deploy-backend.sh)",
        {
            Backend: { type: "String", description: "The backend's name", allowedPattern: "^backend-[0-9]{1,3}$" },
            Release: releaseParameter,
        },
        "applyBackendRelease",
        applyReleaseCommand(store, "backend", releaseFolders.backend("{{ Backend }}"), "{{ Release }}"),
    );
}

/** The proxies' other document: a backend's health gate, asked from the proxy over mutual TLS. */
export function healthGateDocument(store: ReleaseStore, serverName: string, timeoutSeconds: number): CommandDocument {
    return commandDocument(
        "wss-edge: a backend's health gate, from the proxy, over mutual TLS with the proxy's client certificate",
        {
            Backend: { type: "String", description: "The backend's name", allowedPattern: "^backend-[0-9]{1,3}$" },
            Address: { type: "String", description: "Its private address", allowedPattern: "^[0-9a-fA-F:.]{2,45}$" },
            Port: { type: "String", description: "Its port", allowedPattern: "^[0-9]{1,5}$" },
        },
        "backendHealthGate",
        healthGateCommand(store, { name: "{{ Backend }}", address: "{{ Address }}", port: "{{ Port }}", serverName, timeoutSeconds }),
    );
}

/** The backends' third document: the fleet every proxy routes by, for the app's rebalancing (backend-fleet.sh). */
export function backendFleetDocument(): CommandDocument {
    return commandDocument(
        "wss-edge: tell a backend's app the fleet the proxies route by (backend-fleet.sh), so that it moves the sockets whose key now hashes elsewhere",
        {
            Fleet: {
                type: "String",
                description: "The fleet file (JSON: affinity, servers, self), base64",
                allowedPattern: "^[A-Za-z0-9+/=]{16,8192}$",
            },
        },
        "tellBackendFleet",
        inlineScript(backendFleetScript, "backend-fleet", ["{{ Fleet }}"]),
    );
}

/**
 * The shell script the SSM agent runs for a command of `document`: its parameters substituted
 * where `{{ Name }}` stands, after the values pass their patterns (SSM refuses the command
 * otherwise), the steps' lines one after another. What the twin's stand-in for the agent runs.
 */
export function documentScript(document: CommandDocument, parameters: Readonly<Record<string, string>>): string {
    for (const [name, spec] of Object.entries(document.parameters)) {
        const value = parameters[name];
        if (value === undefined) throw new Error(`document parameter ${name} is missing`);
        if (!new RegExp(spec.allowedPattern).test(value))
            throw new Error(`document parameter ${name}: ${JSON.stringify(value)} does not match ${spec.allowedPattern}`);
    }
    for (const name of Object.keys(parameters))
        if (!(name in document.parameters)) throw new Error(`document parameter ${name} is not one of the document's`);
    return document.mainSteps
        .flatMap((step) => step.inputs.runCommand)
        .map((line) => line.replace(/\{\{ ?([A-Za-z0-9]+) ?\}\}/g, (_, name: string) => parameters[name]))
        .join("\n");
}

/** The deploy script each kind of release carries, by its path in this repository. */
const deployScripts: Record<ReleaseKind, string> = { edge: "deploy-edge-config.sh", backend: "deploy-backend.sh" };

/** One release as the store holds it: its bytes, named by their SHA-256. */
export interface StoredRelease {
    readonly id: string;
    readonly content: string;
}

/**
 * A release for the store: its files and the deploy script that applies them, in the bundle
 * format (deploy/deployBundle.ts), named by the hash of its bytes. A change to any file, or to
 * the script, is a new release.
 */
export function storedRelease(kind: ReleaseKind, files: Readonly<Record<string, string>>): StoredRelease {
    const name = deployScripts[kind];
    if (name in files) throw new Error(`a ${kind} release cannot hold a file named ${name}`);
    const content = encodeDeployBundle({ ...files, [name]: script(name) });
    return { id: sha256(content), content };
}
