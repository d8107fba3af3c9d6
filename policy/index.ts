// The wss-edge guardrails, enforced on every `pulumi preview` and `pulumi up` that names this
// pack (`--policy-pack policy`, and `policyPacks` in the pull-request workflow).
import { PolicyPack } from "@pulumi/policy";
import { edgePolicies } from "./edgePolicies";

new PolicyPack("wss-edge-guardrails", { policies: edgePolicies });
