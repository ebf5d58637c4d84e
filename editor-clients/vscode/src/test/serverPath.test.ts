import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveServer, Where } from "../serverPath";

function where(executables: string[], extra: Partial<Where> = {}): Where {
  return {
    configured: "",
    folders: ["/work/app"],
    trusted: true,
    pathEnv: "/usr/local/bin:/usr/bin",
    platform: "linux",
    isExecutable: (file) => executables.includes(file),
    ...extra,
  };
}

test("the setting wins, and a bad one is an error that names it", () => {
  const all = ["/opt/selftune", "/work/app/.venv/bin/selftune", "/usr/bin/selftune"];
  assert.deepEqual(resolveServer(where(all, { configured: "/opt/selftune" })),
    { command: "/opt/selftune", args: ["serve"], source: "the selftune.serverPath setting" });
  const bad = resolveServer(where(all, { configured: "/nope/selftune" }));
  assert.ok("error" in bad && bad.error.includes("selftune.serverPath is /nope/selftune"));
});

test("a trusted workspace's .venv comes before PATH", () => {
  const found = resolveServer(where(["/work/app/.venv/bin/selftune", "/usr/bin/selftune"]));
  assert.ok("command" in found);
  assert.equal(found.command, "/work/app/.venv/bin/selftune");
});

test("an untrusted workspace's .venv is never run", () => {
  const found = resolveServer(where(["/work/app/.venv/bin/selftune", "/usr/bin/selftune"], { trusted: false }));
  assert.ok("command" in found);
  assert.equal(found.command, "/usr/bin/selftune");
  const none = resolveServer(where(["/work/app/.venv/bin/selftune"], { trusted: false }));
  assert.ok("error" in none && none.error.includes("untrusted"));
});

test("PATH is searched in order, and nothing found says what to do", () => {
  const found = resolveServer(where(["/usr/bin/selftune", "/usr/local/bin/selftune"], { folders: [] }));
  assert.ok("command" in found);
  assert.equal(found.command, "/usr/local/bin/selftune");
  const none = resolveServer(where([]));
  assert.ok("error" in none && none.error.includes("selftune.serverPath"));
});

test("Windows looks for Scripts\\selftune.exe", () => {
  const found = resolveServer(where(["C:\\w\\.venv\\Scripts\\selftune.exe"], { folders: ["C:\\w"], platform: "win32", pathEnv: "" }));
  assert.ok("command" in found);
  assert.equal(found.command, "C:\\w\\.venv\\Scripts\\selftune.exe");
});
