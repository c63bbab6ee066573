// The GraphQL-over-HTTP audit (graphql-http's auditServer) against a live server: every
// MUST and every SHOULD. Run by tests/system/test_js_clients.py with CHAT_HTTP_URL set.
import assert from "node:assert/strict";
import { test } from "node:test";

import { auditServer } from "graphql-http";

test("GraphQL over HTTP: every MUST and SHOULD of the audit is ok", async () => {
  const results = await auditServer({ url: process.env.CHAT_HTTP_URL });
  const notOk = results
    .filter((result) => result.status !== "ok")
    .map((result) => `${result.status} ${result.id} ${result.name}: ${result.reason}`);
  assert.deepEqual(notOk, []);
  assert.ok(results.length >= 60, `only ${results.length} audits ran`);
});
