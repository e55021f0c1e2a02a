// What an error says about itself, read from every layer Prisma and the driver wrap it in (no rule
// about what it means: src/mysql/classify.ts judges that), and the four classes the judgement sorts
// errors into.
/**
 * - `connection-lost`: the connection is unusable (killed, reset, closed, timed out mid-query).
 * - `unavailable`: the server could not be reached or refused a new connection; nothing ran.
 * - `conflict`: deadlock or write conflict; the server rolled the transaction back.
 * - `fatal`: everything else (auth, syntax, constraints, timeouts, packet too large...). Never retried.
 */
export type ErrorClass = "connection-lost" | "unavailable" | "conflict" | "fatal";

/** What an error says about itself, gathered from every layer Prisma and the driver wrap it in. */
export interface ErrorFacts {
  /** Prisma's code (P2039, P2010, P2028 ...). */
  prismaCode?: string;
  /** Kind of the driver adapter's mapped error (`mysql`, `TooManyConnections` ...). */
  kind?: string;
  /** Server error number (1213, 2013 ...) or mariadb driver code (45009 ...). */
  errno?: number;
  /** Every layer's error number, outermost first (a pool's 45061 "fails to create connection", then its cause's). */
  errnos: number[];
  sqlState?: string;
  /** Node's socket error code (ECONNRESET, EPIPE ...). */
  socketCode?: string;
  /** The system call that failed with `socketCode` (`connect`, `read` ...): its `syscall`, else the head of its message. */
  socketSyscall?: string;
  /** Messages of every layer, for the few shapes that only a message tells apart. */
  messages: string[];
  /** The driver's reason behind a pool timeout (the mapped error's `cause` text), if any. */
  reason?: string;
  /** One of the layers is this package's own verdict (OutcomeUnknownError, DatabaseUnavailableError). */
  verdict?: string;
  /** The adapter wrapper held the call back (the server was down or refusing us): nothing was sent. */
  heldBack?: boolean;
}

// The adapter wrapper's flight record (src/core/flight.ts), read here for `heldBack` only: a
// held-back call's error (code ECONNREFUSED) comes back from Prisma with its code, message and meta.
const FLIGHT = Symbol.for("prisma-extension-resilience.flight");

// This package's typed errors are final: an outcome already reported as unknown, or a server already
// waited for until the deadline. Their `cause` is a lost connection, which must not make them look
// retryable to anyone (this package's transaction re-runs included).
const FINAL_ERRORS = new Set(["OutcomeUnknownError", "DatabaseUnavailableError"]);

const SOCKET_CODE = /^E[A-Z0-9_]+$/;
const SYSCALL_HEAD = /^(connect|getaddrinfo|read|write|writev) E[A-Z0-9_]+\b/;
const MAX_DEPTH = 6;

export function isObject(v: unknown): v is Record<string, any> {
  return typeof v === "object" && v !== null;
}

/** Collects the facts of an error and of everything it wraps (`meta.driverAdapterError`, `cause`). */
export function errorFacts(error: unknown): ErrorFacts {
  const facts: ErrorFacts = { messages: [], errnos: [] };
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number) => {
    if (depth > MAX_DEPTH) return;
    if (typeof e === "string") {
      facts.messages.push(e);
      return;
    }
    if (!isObject(e) || seen.has(e)) return;
    seen.add(e);
    if (typeof e.name === "string" && FINAL_ERRORS.has(e.name)) facts.verdict ??= e.name;
    const held = (o: unknown) => isObject(o) && (o as any)[FLIGHT]?.heldBack === true;
    if (held(e) || held(e.meta)) facts.heldBack = true;
    if (typeof e.message === "string") facts.messages.push(e.message);
    if (typeof e.originalMessage === "string") facts.messages.push(e.originalMessage);
    const code = e.code;
    if (typeof code === "string") {
      if (/^P\d{4}$/.test(code)) facts.prismaCode ??= code;
      else if (SOCKET_CODE.test(code) && !code.startsWith("ER_") && facts.socketCode === undefined) {
        facts.socketCode = code;
        // Node names it in `syscall` and begins the message with it ("connect ECONNREFUSED …");
        // Prisma's rebuild of a raw socket error keeps only the code and the message.
        const head = typeof e.message === "string" ? SYSCALL_HEAD.exec(e.message) : null;
        facts.socketSyscall = typeof e.syscall === "string" ? e.syscall : head?.[1];
      }
    }
    // A mapped driver adapter error: { kind, code?: number, state?, originalCode?, cause?: string }
    if (typeof e.kind === "string") {
      facts.kind ??= e.kind;
      if (typeof code === "number") facts.errnos.push(code);
      if (typeof e.state === "string" && e.state !== "N/A") facts.sqlState ??= e.state;
      if (typeof e.originalCode === "string" && /^\d+$/.test(e.originalCode)) facts.errnos.push(Number(e.originalCode));
      if (typeof e.cause === "string") facts.reason ??= e.cause;
    }
    // A raw driver error (mariadb SqlError / mysql2): { errno: number, sqlState, code: 'ER_...' }
    if (typeof e.errno === "number" && e.errno > 0) facts.errnos.push(e.errno);
    facts.errno ??= facts.errnos[0];
    if (typeof e.sqlState === "string") facts.sqlState ??= e.sqlState;
    if (isObject(e.meta)) visit(e.meta.driverAdapterError, depth + 1);
    visit(e.cause, depth + 1);
  };
  visit(error, 0);
  return facts;
}
