// Galera nodes and their own addresses. Behind a proxy, the side connection that verifies a lost
// COMMIT lands on any node. When the COMMIT was lost with its node (kill -9, a crash), only that node
// could show its old session gone, and it may stay down past verifyTimeout. With the node's own
// client address (its wsrep_incoming_addresses entry) the verification can go there directly; a
// refused connection there, together with a Primary component that no longer counts the node, is
// proof that the session is gone (see verify.ts).
//
// The address is learned once per server (start) from the node itself, over the first app
// connection that lands on it, and kept only after a side connection to it reached that same
// server: a refusal then means "stopped", not "never reachable from here".
import { log, describeError } from "../log.ts";
import { parseMembers } from "../tuning/galera.ts";
import { sameServer, SideConnections, type NodeAddress, type ServerIdentity } from "./side.ts";

const NODE_SQL = "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_index', 'wsrep_incoming_addresses', 'wsrep_cluster_state_uuid')";

/** At most this many servers are remembered (restarts add new ones): the oldest is forgotten. */
const MAX_NODES = 32;
const PROBE_TIMEOUT_MS = 2000;

/** Tries per server: a node that never answers on its own address is not asked again and again. */
const MAX_TRIES = 3;

interface Node {
  server: ServerIdentity;
  tries: number;
  learning: boolean;
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

function statusMap(rows: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (!Array.isArray(rows)) return out;
  for (const r of rows) out.set(String(r?.Variable_name ?? r?.VARIABLE_NAME ?? "").toLowerCase(), String(r?.Value ?? r?.VALUE ?? ""));
  return out;
}

export class ClusterNodes {
  private readonly nodes: Node[] = [];

  constructor(private readonly side: SideConnections) {}

  /**
   * A new app connection reached `server` (the mariadb driver's callback connection). The first
   * time a server is seen, its own address is read over that connection (one SHOW, only then) and
   * checked with a side connection.
   */
  seen(conn: any, server: ServerIdentity) {
    if (!this.side.canConnectDirectly) return;
    let node = this.find(server);
    if (!node) {
      node = { server, tries: 0, learning: false };
      this.nodes.push(node);
      if (this.nodes.length > MAX_NODES) this.nodes.shift();
    }
    if (node.address || node.learning || node.tries >= MAX_TRIES) return;
    node.tries++;
    node.learning = true;
    const learnt = node;
    const done = () => (learnt.learning = false);
    try {
      conn.query(
        { sql: NODE_SQL },
        (rows: unknown) => void this.learn(learnt, rows).finally(done),
        done,
      );
    } catch {
      // not the driver's connection: no address
      done();
    }
  }

  /** The node's own address, when it was learned and checked, and its cluster. */
  addressOf(server: ServerIdentity): { address: NodeAddress; member: string; cluster: string } | undefined {
    const node = this.find(server);
    return node?.address && node.member && node.cluster ? { address: node.address, member: node.member, cluster: node.cluster } : undefined;
  }

  /** The cluster (wsrep_cluster_state_uuid) the server was in, when known. */
  clusterOf(server: ServerIdentity): string | undefined {
    return this.find(server)?.cluster;
  }

  private find(server: ServerIdentity): Node | undefined {
    return this.nodes.find((n) => sameServer(n.server, server));
  }

  private async learn(node: Node, rows: unknown) {
    const status = statusMap(rows);
    const members = parseMembers(status.get("wsrep_incoming_addresses"));
    const index = Number(status.get("wsrep_local_index"));
    // Not a Galera node (or not in a component now): nothing to learn.
    if (!members || !Number.isInteger(index) || index < 0 || index >= members.length) {
      node.tries = MAX_TRIES;
      return;
    }
    node.cluster = status.get("wsrep_cluster_state_uuid") || undefined;
    const member = members[index];
    const address = parseAddress(member);
    if (!address || !node.cluster || this.side.isClosed) return;
    const { conn } = await this.side.connect(PROBE_TIMEOUT_MS, address);
    if (!conn) return;
    try {
      const there = await SideConnections.serverIdentity(conn);
      // The list and the index are read together, but a view change between them, or an address
      // this host cannot reach as such, shows here: only the same server counts.
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
