import assert from "node:assert/strict";
import { test } from "node:test";
import { Restarts } from "../restarts";

/** A restart job whose runs wait for `finish()`; it logs when each run reads the settings and ends. */
function job() {
  const log: string[] = [];
  const pending: { read: () => void; done: () => void }[] = [];
  let runs = 0;
  const restarts = new Restarts(async (reading) => {
    const run = ++runs;
    await new Promise<void>((resolve) => pending.push({ read: () => { reading(); log.push(`read ${run}`); }, done: resolve }));
    log.push(`end ${run}`);
  });
  /** Let the oldest waiting run read the settings (and end, unless `readOnly`). */
  const step = async (readOnly = false) => {
    while (!pending.length) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const run = pending[0];
    run.read();
    if (!readOnly) {
      pending.shift();
      run.done();
    }
  };
  return { restarts, log, step, pending };
}

test("one request, one run", async () => {
  const { restarts, log, step } = job();
  const done = restarts.request();
  await step();
  await done;
  assert.deepEqual(log, ["read 1", "end 1"]);
});

test("requests before the run reads the settings join it", async () => {
  const { restarts, log, step } = job();
  const first = restarts.request();
  const second = restarts.request(); // e.g. the trust event, then the configuration change
  assert.equal(first, second);
  await step();
  await first;
  assert.deepEqual(log, ["read 1", "end 1"]);
});

test("requests after the run read the settings make one more run, after it, never two at once", async () => {
  const { restarts, log, step, pending } = job();
  const first = restarts.request();
  await step(true); // run 1 has read the settings and is still starting the server
  const second = restarts.request();
  const third = restarts.request();
  assert.equal(pending.length, 1, "no second run while the first is under way");
  pending.shift()!.done();
  await step();
  await Promise.all([first, second, third]);
  assert.deepEqual(log, ["read 1", "end 1", "read 2", "end 2"]);
});

test("a failed run does not stop later requests", async () => {
  let runs = 0;
  const restarts = new Restarts(async (reading) => {
    runs += 1;
    reading();
    if (runs === 1) {
      throw new Error("no server");
    }
  });
  await restarts.request();
  await restarts.request();
  assert.equal(runs, 2);
});
