// The mariadb driver's Connection class, which test/support/driver-bug.ts hooks into (the driver
// ships no types for its internals).
declare module "mariadb/lib/connection.js" {
  const Connection: { prototype: Record<string, unknown> };
  export default Connection;
}
