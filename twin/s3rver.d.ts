/** The part of s3rver (an S3-compatible server on the file system; it ships no types) the twin's release store uses. */
declare module "s3rver" {
    import type { AddressInfo } from "node:net";

    interface S3rverOptions {
        readonly address?: string;
        readonly port?: number;
        readonly silent?: boolean;
        /** Where buckets and objects live. */
        readonly directory?: string;
        readonly configureBuckets?: readonly { readonly name: string }[];
    }

    class S3rver {
        constructor(options?: S3rverOptions);
        run(): Promise<AddressInfo>;
        close(): Promise<void>;
    }
    export default S3rver;
}
