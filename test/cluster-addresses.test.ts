// Galera nodes' own addresses, as wsrep_incoming_addresses lists them (no server: parsing only).
// Recorded shapes: MariaDB 10.11 + galera-4 lists `127.0.0.1:34097,127.0.0.1:35695,…`; a member
// without an incoming address is an empty entry; IPv6 addresses come in brackets.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseAddress } from "../src/adapter/nodes.ts";
import { parseMembers } from "../src/mysql/galera.ts";

test("parseMembers keeps every position, empty entries included, so wsrep_local_index points at the right one", () => {
  assert.deepEqual(parseMembers("127.0.0.1:34097,127.0.0.1:35695,127.0.0.1:44527"), ["127.0.0.1:34097", "127.0.0.1:35695", "127.0.0.1:44527"]);
  assert.deepEqual(parseMembers("10.0.0.1:3306,,10.0.0.3:3306"), ["10.0.0.1:3306", "", "10.0.0.3:3306"]);
  assert.equal(parseMembers("10.0.0.1:3306,,10.0.0.3:3306")![2], "10.0.0.3:3306");
  assert.equal(parseMembers(""), undefined);
  assert.equal(parseMembers(undefined), undefined);
});

test("parseAddress reads host:port, IPv6 in brackets, and nothing else", () => {
  assert.deepEqual(parseAddress("127.0.0.1:34097"), { host: "127.0.0.1", port: 34097 });
  assert.deepEqual(parseAddress("db-2.internal:3306"), { host: "db-2.internal", port: 3306 });
  assert.deepEqual(parseAddress("[fd00::2]:3306"), { host: "fd00::2", port: 3306 });
  for (const bad of ["", "AUTO", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "host:port", "a b:3306", "127.0.0.1:3306/x"]) {
    assert.equal(parseAddress(bad), undefined, bad);
  }
});
