/**
 * The release store's stand-in for the VM twin: s3rver, an S3-compatible server, on this machine,
 * at the address every twin reaches alike (sharedHostAddress, as the region's S3 endpoint is
 * one for every VM). Releases, the `current` pointer and the gate's credentials are written with
 * Debian's AWS CLI and `--endpoint-url`, the client the VM itself fetches with, never into
 * s3rver's folder: what the twin reads is what an S3 client wrote.
 */
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import S3rver from "s3rver";
import {
    currentKey,
    gateCredentialsKey,
    type ReleaseKind,
    type ReleaseStore,
    releaseKey,
    type StoredRelease,
    storedRelease,
} from "../host/releaseChannel";
import { freePort } from "../local/ports";
import { sharedHostAddress } from "./vmTwin";

/** Debian's AWS CLI (awscli 2.9), the one the VM runs: a pyenv or pip `aws` earlier on PATH is not it. */
export const awsCli = "/usr/bin/aws";
/** The region the twin's store and documents name; s3rver takes any. */
export const twinRegion = "eu-west-1";
/** s3rver's fixed key pair: the stand-in for the instance role (on the twin) and for `pulumi up`'s credentials (here). */
export const storeCredentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const;

/** What the twin's /root/.aws/credentials holds (VmTwin's instanceRoleCredentials): the instance role's stand-in, read by the AWS CLI on the VM. */
export const instanceRoleCredentials = [
    "[default]",
    `aws_access_key_id = ${storeCredentials.accessKeyId}`,
    `aws_secret_access_key = ${storeCredentials.secretAccessKey}`,
    "",
].join("\n");

export interface TwinReleaseStoreOptions {
    /** Where s3rver keeps the bucket (the twin run's own folder). */
    readonly directory: string;
    readonly bucket?: string;
}

export class TwinReleaseStore {
    private constructor(
        private readonly server: S3rver,
        readonly bucket: string,
        readonly port: number,
        private readonly directory: string,
    ) {}

    /** s3rver on a reserved port of every address, with the bucket made. */
    static async start(options: TwinReleaseStoreOptions): Promise<TwinReleaseStore> {
        const bucket = options.bucket ?? "wss-edge-twin-releases";
        await mkdir(join(options.directory, "objects"), { recursive: true });
        const port = await freePort("0.0.0.0");
        const server = new S3rver({
            address: "0.0.0.0",
            port,
            silent: true,
            directory: join(options.directory, "objects"),
            configureBuckets: [{ name: bucket }],
        });
        await server.run();
        return new TwinReleaseStore(server, bucket, port, options.directory);
    }

    /** The store as the twins are told it (user data, documents): reached at the shared address on their links. */
    get forTwins(): ReleaseStore {
        return { bucket: this.bucket, region: twinRegion, endpointUrl: `http://${sharedHostAddress}:${this.port}` };
    }

    /** The store's endpoint from this machine, where `pulumi up` (ssm-send.sh) and the tests write. */
    get endpointHere(): string {
        return `http://127.0.0.1:${this.port}`;
    }

    /** What the AWS CLI here runs with: s3rver's keys, and nothing of this machine's own AWS setup. */
    get cliEnvironment(): NodeJS.ProcessEnv {
        const unused = join(this.directory, "no-aws-config");
        return {
            PATH: `/usr/bin:/bin:${process.env.PATH ?? ""}`,
            HOME: this.directory,
            AWS_ACCESS_KEY_ID: storeCredentials.accessKeyId,
            AWS_SECRET_ACCESS_KEY: storeCredentials.secretAccessKey,
            AWS_CONFIG_FILE: unused,
            AWS_SHARED_CREDENTIALS_FILE: unused,
            AWS_EC2_METADATA_DISABLED: "true",
            AWS_PAGER: "",
        };
    }

    /** `aws s3 …` against the store, with `input` on standard input. */
    async s3(args: readonly string[], input?: string): Promise<string> {
        return new Promise((done, fail) => {
            const child = execFile(
                awsCli,
                ["--endpoint-url", this.endpointHere, "--region", twinRegion, "s3", ...args],
                { env: this.cliEnvironment, timeout: 60000, maxBuffer: 64 * 1024 * 1024 },
                (error, stdout, stderr) =>
                    error
                        ? fail(new Error(`twin release store: aws s3 ${args.join(" ")} failed: ${stderr.trim() || error.message}`))
                        : done(stdout),
            );
            child.stdin?.on("error", () => undefined);
            child.stdin?.end(input ?? "");
        });
    }

    /** Writes `content` at `key`. */
    async put(key: string, content: string): Promise<void> {
        await this.s3(["cp", "--only-show-errors", "-", `s3://${this.bucket}/${key}`], content);
    }

    /** The object at `key`, or undefined when there is none. */
    async get(key: string): Promise<string | undefined> {
        try {
            return await this.s3(["cp", "--only-show-errors", `s3://${this.bucket}/${key}`, "-"]);
        } catch (error) {
            if (/\(404\)|NoSuchKey|does not exist/.test((error as Error).message)) return undefined;
            throw error;
        }
    }

    /** Removes the object at `key` (none there is no error). */
    async remove(key: string): Promise<void> {
        await this.s3(["rm", "--only-show-errors", `s3://${this.bucket}/${key}`]);
    }

    /** Publishes a release of `kind` in `folder`, named by its hash; resolves with it. */
    async publish(kind: ReleaseKind, folder: string, files: Readonly<Record<string, string>>): Promise<StoredRelease> {
        const release = storedRelease(kind, files);
        await this.put(releaseKey(folder, release.id), release.content);
        return release;
    }

    /** Names the release new VMs of `folder` apply at first boot. */
    async setCurrent(folder: string, id: string): Promise<void> {
        await this.put(currentKey(folder), id);
    }

    /** The release `folder`'s `current` names, or undefined before the first. */
    async current(folder: string): Promise<string | undefined> {
        return (await this.get(currentKey(folder)))?.trim();
    }

    /** What a backend's health gate on a proxy presents (healthGateCredentials), where the gate document fetches it. */
    async putGateCredentials(bundle: string): Promise<void> {
        await this.put(gateCredentialsKey, bundle);
    }

    async stop(): Promise<void> {
        await this.server.close().catch(() => undefined);
    }
}
