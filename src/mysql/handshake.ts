// The authentication-plugin guard of a direct connection to a node's advertised address (see
// src/adapter/side.ts): no plugin that would hand the password to the other end.
import type { Socket } from "node:net";

/**
 * Authentication plugins a direct connection to a node's advertised address may use: none that
 * hands the password to the other end. With TLS of any kind the driver sends it in clear inside the
 * TLS session for the sha256 plugins (and it checks the certificate only after authentication), so
 * those two are allowed only without TLS and without fetching the server's RSA key.
 */
export function directAuth(config: { ssl?: unknown; allowPublicKeyRetrieval?: unknown; restrictedAuth?: unknown }): string[] {
  const plugins = ["mysql_native_password", "client_ed25519", "parsec"];
  if (!config.ssl && !config.allowPublicKeyRetrieval) plugins.push("caching_sha2_password", "sha256_password");
  const theirs = pluginList(config.restrictedAuth);
  return theirs ? plugins.filter((p) => theirs.includes(p)) : plugins;
}

/** `restrictedAuth` as the driver reads it (an array, or a comma-separated string). */
function pluginList(value: unknown): string[] | undefined {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === "string") return value.split(",").map((p) => p.trim());
  return undefined;
}

/** The auth plugin a protocol-10 greeting names, read as mariadb 3.4's InitialHandshake reads it. */
export function greetingPlugin(payload: Buffer): string | undefined {
  try {
    if (payload[0] !== 10) return undefined;
    let at = payload.indexOf(0, 1);
    if (at < 0) return undefined;
    at += 1 + 4 + 8 + 1; // NUL after the version, thread id, seed part 1, filler
    let caps = payload.readUInt16LE(at);
    at += 2 + 1 + 2; // capabilities (low), collation, status
    caps += payload.readUInt16LE(at) * 0x10000;
    at += 2;
    const pluginAuth = (caps & (1 << 19)) !== 0;
    const saltLength = pluginAuth ? Math.max(12, payload[at] - 9) : 0;
    at += 1 + 10;
    if (caps & (1 << 15)) at += saltLength;
    at += 1;
    if (!pluginAuth) return "mysql_native_password";
    const end = payload.indexOf(0, at);
    if (at > payload.length || end < 0) return undefined;
    return payload.toString("latin1", at, end);
  } catch {
    return undefined;
  }
}

/**
 * The driver answers the server's greeting with the plugin the greeting names, without looking at
 * `restrictedAuth` (that covers only a later switch), and before any certificate check. On a direct
 * connection the greeting is read first (buffered until whole: the driver cannot answer earlier
 * either): a plugin not in `allowed` closes the socket before the driver can answer. An error
 * packet is let through (the driver answers nothing to it).
 */
export function guardGreeting(socket: Socket, allowed: string[]) {
  let buffered = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length < 4 || buffered.length < 4 + buffered.readUIntLE(0, 3)) return;
    socket.off("data", onData);
    const payload = buffered.subarray(4, 4 + buffered.readUIntLE(0, 3));
    if (payload[0] === 0xff) return;
    const plugin = greetingPlugin(payload);
    if (plugin === undefined || !allowed.includes(plugin)) {
      socket.destroy(Object.assign(new Error("refused: the server asked for an authentication plugin a direct connection does not use"), { code: "EPROTO" }));
    }
  };
  socket.prependListener("data", onData);
}
