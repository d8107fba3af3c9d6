import * as pulumi from "@pulumi/pulumi";
import type * as tls from "@pulumi/tls";
import type { SshHostKey } from "../host/cloudConfig";

/**
 * User data that presets the host's SSH key (cloud-init's documented way), so the deploy can pin
 * it; it holds a private key, so it is a secret.
 */
export function userDataWithHostKey(hostKey: tls.PrivateKey, render: (key: SshHostKey) => string): pulumi.Output<string> {
    return pulumi.secret(
        pulumi
            .all([hostKey.privateKeyOpenssh, hostKey.publicKeyOpenssh])
            .apply(([privateKeyOpenssh, publicKeyOpenssh]) => render({ privateKeyOpenssh, publicKeyOpenssh })),
    );
}

/** What every instance of the stack gets, proxy and backends alike. */
export const hardenedInstanceSettings = {
    // IMDSv2 only, and one network hop: containers on the host cannot reach the metadata service.
    metadataOptions: { httpTokens: "required", httpEndpoint: "enabled", httpPutResponseHopLimit: 1 },
    rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: 16, deleteOnTermination: true },
    monitoring: true,
};

/**
 * Graviton families carry a "g" after the generation (t4g, c7gn, m6gd, g5g); g5 and g4dn do not.
 * A1, the first Graviton, has no "g".
 */
export function cpuArchitecture(instanceType: string): "arm64" | "x86_64" {
    return /^a1\./.test(instanceType) || /^[a-z]+[0-9]+[a-z]*g[a-z]*\./.test(instanceType) ? "arm64" : "x86_64";
}
