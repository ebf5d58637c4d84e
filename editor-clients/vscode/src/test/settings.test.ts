import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { serverKeys, serverSettings } from "../settings";

const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const properties = pkg.contributes.configuration.properties as Record<string, { default: unknown }>;

test("the extension's own settings never reach the server", () => {
  const keys = serverKeys(properties);
  assert.ok(keys.includes("maxTokens") && keys.includes("testFeedback"));
  for (const own of ["serverPath", "languages", "trace.server"]) {
    assert.ok(`selftune.${own}` in properties, own);
    assert.ok(!keys.includes(own), own);
  }
});

test("a trusted workspace sends the settings as they are", () => {
  const values: Record<string, unknown> = { maxTokens: 32, testFeedback: true, record: undefined };
  const sent = serverSettings(["maxTokens", "testFeedback", "record"], (k) => values[k], true);
  assert.deepEqual(sent, { maxTokens: 32, testFeedback: true, workspaceTrusted: true });
});

test("an untrusted workspace never runs tests, whatever the settings say", () => {
  const sent = serverSettings(["testFeedback", "maxTokens"], (k) => (k === "testFeedback" ? true : 8), false);
  assert.deepEqual(sent, { testFeedback: false, maxTokens: 8, workspaceTrusted: false });
});

test("the defaults in package.json are what VS Code sends when nothing is set", () => {
  const keys = serverKeys(properties);
  const sent = serverSettings(keys, (k) => properties[`selftune.${k}`].default, true);
  assert.equal(sent.testFeedback, false);
  assert.equal(sent.record, true);
  assert.equal(Object.keys(sent).length, keys.length + 1);
});
