import assert from "node:assert/strict";
import { test } from "node:test";
import { PartialAcceptance } from "../partial";

const URI = "file:///w/a.py";

test("word by word: each step reports the length accepted so far", () => {
  const p = new PartialAcceptance();
  p.offer(URI, "c1", 10, "compute(a, b)");
  assert.deepEqual(p.changed(URI, { offset: 10, removed: 0, text: "compute" }, true), { id: "c1", length: 7 });
  assert.deepEqual(p.changed(URI, { offset: 17, removed: 0, text: "(a, " }, true), { id: "c1", length: 11 });
});

test("typing through counts, but only an accept command reports", () => {
  const p = new PartialAcceptance();
  p.offer(URI, "c1", 0, "return x + 1");
  assert.equal(p.changed(URI, { offset: 0, removed: 0, text: "r" }, false), undefined);
  assert.deepEqual(p.changed(URI, { offset: 1, removed: 0, text: "eturn " }, true), { id: "c1", length: 7 });
});

test("edits before a suggestion move it; edits inside it end the following", () => {
  const p = new PartialAcceptance();
  p.offer(URI, "c1", 20, "value");
  assert.equal(p.changed(URI, { offset: 0, removed: 3, text: "" }, false), undefined);
  assert.deepEqual(p.changed(URI, { offset: 17, removed: 0, text: "val" }, true), { id: "c1", length: 3 });
  assert.equal(p.changed(URI, { offset: 18, removed: 1, text: "X" }, false), undefined); // inside what was taken
  assert.equal(p.changed(URI, { offset: 20, removed: 0, text: "ue" }, true), undefined);
});

test("text that is not the suggestion is not acceptance", () => {
  const p = new PartialAcceptance();
  p.offer(URI, "c1", 5, "foo()");
  assert.equal(p.changed(URI, { offset: 5, removed: 0, text: "bar" }, true), undefined);
  assert.equal(p.changed(URI, { offset: 5, removed: 0, text: "foo" }, true), undefined); // no longer followed
});

test("a suggestion partly taken is continued before a newer one shown at the same place", () => {
  const p = new PartialAcceptance();
  p.offer(URI, "c1", 0, "alpha beta gamma");
  p.changed(URI, { offset: 0, removed: 0, text: "alpha " }, true);
  p.offer(URI, "c2", 6, "beta gamma");
  assert.deepEqual(p.changed(URI, { offset: 6, removed: 0, text: "beta " }, true), { id: "c1", length: 11 });
  p.forget(URI);
  assert.equal(p.changed(URI, { offset: 11, removed: 0, text: "gamma" }, true), undefined);
});
