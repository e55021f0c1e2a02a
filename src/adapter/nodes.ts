// Galera nodes and their own addresses. Behind a proxy, the side connection that verifies a lost
// COMMIT lands on any node. When the COMMIT was lost with its node (kill -9, a crash), only that node
// could show its old session gone, and it may stay down past verifyTimeout. With the node's own
// client address (its wsrep_incoming_addresses entry) the verification can go there directly; a
// refused connection there, together with a Primary component that no longer counts the node, is
// proof that the session is gone (see verify.ts).
//
// The address comes with each app connection's identity (SESSION_SQL: no extra statement) and is
// kept only after a side connection to it reached that same server: a refusal then means
// "stopped", not "never reachable from here".
import { log, describeError } from "../core/log.ts";
import { sameServer, SideConnections, type NodeAddress, type ServerIdentity, type SessionIdentity } from "./side.ts";

/** At most this many servers are remembered (restarts add new ones): the oldest is forgotten. */
const MAX_NODES = 32;
const PROBE_TIMEOUT_MS = 2000;
/** Direct tries per server: a node that never answers on its own address is not asked again and again. */
const MAX_TRIES = 3;

interface Node {
  server: ServerIdentity;
  tries: number;
  checking: boolean;
  /** Set once a side connection to it reached this very server. */
  address?: NodeAddress;
  /** Its entry as the cluster lists it (`host:port`). */
  member?: string;
  /** Its cluster's wsrep_cluster_state_uuid. */
  cluster?: string;
}

/** `host:port` → address; IPv6 in brackets. undefined for anything else. */
export function parseAddress(member: string): NodeAddress | undefined {
  const m = /^\[?([A-Za-z0-9.:%_-]+?)\]?:(\d{1,5})$/.exec(member);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1], port } : undefined;
}

export class ClusterNodes {
  private readonly nodes: Node[] = [];

  constructor(private readonly side: SideConnections) {}

  /**
   * A new app connection's identity. The first time a Galera node is seen (per start), its own
   * address is checked with a side connection.
   */
  seen(session: SessionIdentity) {
    const { server, member, cluster } = session;
    if (!member || !cluster || !this.side.canConnectDirectly || this.side.isClosed) return;
    let node = this.find(server);
    if (!node) {
      node = { server, tries: 0, checking: false };
      this.nodes.push(node);
      if (this.nodes.length > MAX_NODES) this.nodes.shift();
    }
    node.cluster ??= cluster;
    if (node.address || node.checking || node.tries >= MAX_TRIES) return;
    const address = parseAddress(member);
    if (!address) return;
    node.tries++;
    node.checking = true;
    const checked = node;
    void this.check(checked, member, address).finally(() => (checked.checking = false));
  }

  /** The node's own address, when it was learned and checked, and its cluster. */
  addressOf(server: ServerIdentity): { address: NodeAddress; member: string; cluster: string } | undefined {
    const node = this.find(server);
    return node?.address && node.member && node.cluster ? { address: node.address, member: node.member, cluster: node.cluster } : undefined;
  }

  private find(server: ServerIdentity): Node | undefined {
    return this.nodes.find((n) => sameServer(n.server, server));
  }

  private async check(node: Node, member: string, address: NodeAddress) {
    const { conn } = await this.side.connect(PROBE_TIMEOUT_MS, address);
    if (!conn) return;
    try {
      const there = await SideConnections.serverIdentity(conn);
      // A view change between reading the list and the index, or an address this host cannot
      // reach as such, shows here: only the same server counts.
      if (there && sameServer(there, node.server)) {
        node.address = address;
        node.member = member;
      }
    } catch (e) {
      log(`checking a Galera node's own address failed (${describeError(e)})`);
    } finally {
      await this.side.release(conn);
    }
  }
}
