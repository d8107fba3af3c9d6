// A program that asks for a dual-stack edge without giving its VPC: refused before anything is registered.
import { WssEdge } from "../../components";

new WssEdge("lost", { ipv6: true });
