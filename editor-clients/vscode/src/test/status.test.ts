import assert from "node:assert/strict";
import { test } from "node:test";
import { describe, ServerStatus } from "../status";

const ready: ServerStatus = {
  state: "recording", model: "gemma3-270m", modelState: "ready", modelError: null, adapter: null,
  recording: true, journals: ["/w/.selftune/journal.sqlite3"], testFeedback: [], progress: null,
};

test("model, adapter and state are shown", () => {
  const view = describe(ready, "running");
  assert.equal(view.text, "$(record) gemma3-270m · base · recording");
  assert.match(view.tooltip, /recording in \/w\/.selftune\/journal.sqlite3/);
  assert.match(view.tooltip, /tests on save: off/);
  assert.equal(view.problem, "none");
});

test("work in progress shows its percentage or message", () => {
  const testing = describe({ ...ready, state: "testing", testFeedback: ["/w"],
    progress: { title: "selftune: running tests", message: "3/12 nearest tests, 1 failed", percentage: null } }, "running");
  assert.equal(testing.text, "$(loading~spin) gemma3-270m · base · testing 3/12 nearest tests, 1 failed");
  assert.match(testing.tooltip, /tests on save in \/w/);
  const adapting = describe({ ...ready, state: "adapting", adapter: "a7",
    progress: { title: "training", message: "step 3/40", percentage: 7 } }, "running");
  assert.equal(adapting.text, "$(loading~spin) gemma3-270m · a7 · adapting 7%");
});

test("a model that failed to load and a server that is gone are errors", () => {
  const failed = describe({ ...ready, modelState: "error", modelError: "no such file" }, "running");
  assert.match(failed.text, /gemma3-270m \(failed\)/);
  assert.match(failed.tooltip, /no such file/);
  assert.equal(failed.problem, "error");
  const gone = describe(ready, "failed", "selftune was not found");
  assert.equal(gone.problem, "error");
  assert.match(gone.tooltip, /could not start: selftune was not found/);
  assert.match(describe(undefined, "starting").text, /loading~spin/);
});
