import * as aws from "@pulumi/aws";
import type * as pulumi from "@pulumi/pulumi";
import type { ProxyPlatform } from "../settings/settingsTable";

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

/** The backends' instance type's memory, which sets how many sockets each holds. */
export function backendMemoryMiB(instanceType: string): pulumi.Output<number> {
    return aws.ec2.getInstanceTypeOutput({ instanceType }).memorySize;
}

/** The proxy's image and what its instance type offers (memory and vCPUs size NGINX's workers and its socket ceiling). */
/** The proxy's machine: the latest Debian image of `platform` for its architecture, and EC2's facts of its type. */
export function proxyMachine(instanceType: string, platform: ProxyPlatform, parent: pulumi.Resource) {
    const architecture = cpuArchitecture(instanceType);
    const ami = aws.ec2.getAmiOutput(
        {
            owners: ["136693071363"], // Debian's official cloud images
            mostRecent: true,
            filters: [
                { name: "name", values: [`${platform}-${architecture === "arm64" ? "arm64" : "amd64"}-*`] },
                { name: "state", values: ["available"] },
            ],
        },
        { parent },
    );
    const facts = aws.ec2.getInstanceTypeOutput({ instanceType }, { parent });
    return { amiId: ami.id, memoryMiB: facts.memorySize, vcpus: facts.defaultVcpus };
}
