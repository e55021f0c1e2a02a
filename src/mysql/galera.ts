// Reads a Galera node's state for the doctor: is wsrep on, how big is the cluster this node sees,
// is it in the Primary component, is it Synced (wsrep_local_state 4), and is read-your-writes on
// (wsrep_sync_wait). Only SHOW statements: they also run on a node that lost quorum, where anything
// else is answered with 1047 "WSREP has not yet prepared node for application use".

/** What a connection needs: mariadb's Connection/Pool, or anything with the same `query`. */
export interface Queryable {
  query(sql: string): Promise<unknown>;
}

/** wsrep_local_state values (Galera 4). */
const LOCAL_STATES: Record<number, string> = { 1: "Joining", 2: "Donor/Desynced", 3: "Joined", 4: "Synced" };

export interface GaleraState {
  /** wsrep is on and a provider is loaded: this server is a Galera node. */
  galera: boolean;
  /** wsrep_cluster_size: nodes in this node's component. */
  clusterSize?: number;
  /** wsrep_cluster_status: `Primary`, `non-Primary` or `Disconnected`. */
  clusterStatus?: string;
  /** wsrep_local_state: 4 is Synced, the only state that should take traffic. */
  localState?: number;
  localStateComment?: string;
  /** wsrep_ready: the node accepts queries. */
  ready?: boolean;
  /** wsrep_sync_wait (global): 0 means a read may not yet see a write committed through another node. */
  syncWait?: number;
  /** The galera provider's version (wsrep_provider_version). */
  providerVersion?: string;
  /** The client addresses (`host:port`, wsrep_incoming_addresses) of the members of this node's component. */
  members?: string[];
  /** wsrep_cluster_state_uuid: the cluster's history; nodes of one cluster share it. */
  clusterUuid?: string;
  /** This node's own entry in `members` (wsrep_local_index), when it has one. */
  self?: string;
  /** Synced, in the Primary component and ready: this node can take writes now. */
  healthy: boolean;
  /** What to do about it, in words a person reads (empty when there is nothing to say). */
  notes: string[];
}

function rowsToMap(rows: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (!Array.isArray(rows)) return out;
  for (const r of rows) {
    if (typeof r !== "object" || r === null) continue;
    const name = (r as any).Variable_name ?? (r as any).VARIABLE_NAME;
    const value = (r as any).Value ?? (r as any).VALUE;
    if (typeof name === "string") out.set(name.toLowerCase(), value === null || value === undefined ? "" : String(value));
  }
  return out;
}

/** wsrep_incoming_addresses as a list (undefined when the server does not say). */
export function parseMembers(value: string | undefined): string[] | undefined {
  if (value === undefined || value === "") return undefined;
  // Empty entries (a member without an address) are kept: positions match wsrep_local_index.
  return value.split(",").map((a) => a.trim());
}

/**
 * Reads the Galera state of the server behind `conn`. On a server without Galera (plain MariaDB,
 * MySQL) it resolves with `{ galera: false, healthy: true }`.
 */
export async function readGaleraState(conn: Queryable): Promise<GaleraState> {
  const vars = rowsToMap(
    await conn.query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('wsrep_on', 'wsrep_provider', 'wsrep_sync_wait')"),
  );
  const on = /^(on|1)$/i.test(vars.get("wsrep_on") ?? "");
  const provider = vars.get("wsrep_provider") ?? "";
  if (!on || provider === "" || provider.toLowerCase() === "none") return { galera: false, healthy: true, notes: [] };

  const status = rowsToMap(
    await conn.query(
      "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_cluster_status', 'wsrep_local_state', " +
        "'wsrep_local_state_comment', 'wsrep_ready', 'wsrep_provider_version', 'wsrep_incoming_addresses', 'wsrep_cluster_state_uuid', 'wsrep_local_index')",
    ),
  );
  const localState = Number(status.get("wsrep_local_state") ?? NaN);
  const clusterStatus = status.get("wsrep_cluster_status");
  const ready = /^on$/i.test(status.get("wsrep_ready") ?? "");
  const syncWait = Number(vars.get("wsrep_sync_wait") ?? NaN);
  const members = parseMembers(status.get("wsrep_incoming_addresses"));
  const index = Number(status.get("wsrep_local_index") ?? NaN);
  const state: GaleraState = {
    galera: true,
    clusterSize: Number(status.get("wsrep_cluster_size") ?? NaN),
    clusterStatus,
    localState: Number.isNaN(localState) ? undefined : localState,
    localStateComment: status.get("wsrep_local_state_comment") ?? LOCAL_STATES[localState],
    ready,
    syncWait: Number.isNaN(syncWait) ? undefined : syncWait,
    providerVersion: status.get("wsrep_provider_version"),
    members,
    self: members && Number.isInteger(index) && index >= 0 && index < members.length ? members[index] || undefined : undefined,
    clusterUuid: status.get("wsrep_cluster_state_uuid") || undefined,
    healthy: localState === 4 && clusterStatus === "Primary" && ready,
    notes: [],
  };
  if (clusterStatus !== "Primary") {
    state.notes.push(
      `this node is ${clusterStatus ?? "not"} Primary (lost quorum): it answers queries with 1047; the proxy must take it out of rotation`,
    );
  } else if (localState !== 4) {
    state.notes.push(
      `this node is ${state.localStateComment ?? `in state ${localState}`}, not Synced: health-check proxies on wsrep_local_state = 4`,
    );
  }
  if (state.syncWait === 0) {
    state.notes.push(
      "wsrep_sync_wait = 0: a read on another node may not yet see a write committed here; set wsrep_sync_wait = 1 where a re-run must read its own writes",
    );
  }
  return state;
}

/** One line for the doctor's text output. */
export function describeGaleraState(s: GaleraState): string {
  if (!s.galera) return "galera      not a Galera node (wsrep off)";
  const head =
    `galera      ${s.clusterStatus} component of ${s.clusterSize} node(s), this node ${s.localStateComment} ` +
    `(wsrep_local_state ${s.localState}), wsrep_sync_wait ${s.syncWait}${s.providerVersion ? `, provider ${s.providerVersion}` : ""}`;
  return [head, ...s.notes.map((n) => `            ${n}`)].join("\n");
}
