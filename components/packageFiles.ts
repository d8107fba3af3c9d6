import { join, relative } from "node:path";

/**
 * A file of this package as a path relative to the program's folder (Pulumi's working
 * directory): `deploy/ssm-send.sh` in this project, `node_modules/wss-edge/deploy/ssm-send.sh` in
 * a program that imports the edge. Relative, because the path sits in the state: an absolute one
 * would differ between checkouts, and a run from another checkout would redeploy.
 */
export const packageFile = (file: string): string => relative(process.cwd(), join(__dirname, "..", file)) || ".";
