// What another Pulumi program imports: the edge as one component (see docs/adopting.md).
export { WssEdge, type WssEdgeArgs, type WssEdgeOutputs } from "./wssEdge";
