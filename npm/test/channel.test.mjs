// The pure channel: JSON Lines framing, request ids, routing of interleaved answers, fail-all on close.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { createChannel, ProtocolError } from "../src/channel.js";

function harness(options = {}) {
  const written = [];
  const strays = [];
  const hellos = [];
  const channel = createChannel({
    write: (line) => written.push(line),
    onHello: (h) => hellos.push(h),
    onStray: (m) => strays.push(m),
    ...options,
  });
  return { channel, written, strays, hellos };
}

const line = (obj) => `${JSON.stringify(obj)}\n`;

describe("channel", () => {
  it("writes one compact JSON object per request, with increasing string ids", () => {
    const { channel, written } = harness();
    const a = channel.request("execute", { runId: "r" });
    const b = channel.request("test_environment", { companyId: "c" });
    assert.equal(a.id, "1");
    assert.equal(b.id, "2");
    assert.deepEqual(written.map((l) => JSON.parse(l)), [
      { type: "execute", id: "1", params: { runId: "r" } },
      { type: "test_environment", id: "2", params: { companyId: "c" } },
    ]);
    assert.ok(written.every((l) => !l.includes("\n")), "the owner appends the newline");
    channel.notify({ type: "cancel", id: "1" });
    assert.deepEqual(JSON.parse(written[2]), { type: "cancel", id: "1" });
  });

  it("routes the hello, then frames lines across arbitrary chunk boundaries (including inside UTF-8)", async () => {
    const { channel, hellos } = harness();
    const seen = [];
    const { promise } = channel.request("execute", {}, (m) => seen.push(m));
    const text =
      line({ type: "hello", protocol: 1, version: "0.1.0" }) +
      line({ type: "log", id: "1", stream: "stdout", chunk: "héllo ✓ 日本\n" }) +
      line({ type: "result", id: "1", result: { exitCode: 0 } });
    const bytes = Buffer.from(text, "utf8");
    for (let i = 0; i < bytes.length; i += 3) channel.feed(bytes.subarray(i, i + 3));
    assert.deepEqual(hellos, [{ type: "hello", protocol: 1, version: "0.1.0" }]);
    assert.deepEqual(await promise, { exitCode: 0 });
    assert.deepEqual(seen, [{ type: "log", id: "1", stream: "stdout", chunk: "héllo ✓ 日本\n" }]);
    assert.equal(channel.pendingCount, 0);
  });

  it("keeps interleaved events with their own request, in order", async () => {
    const { channel } = harness();
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const seen = { 1: [], 2: [] };
    const one = channel.request("execute", {}, (m) => seen[1].push(m.chunk ?? m.type));
    const two = channel.request("execute", {}, (m) => seen[2].push(m.chunk ?? m.type));
    channel.feed(
      line({ type: "log", id: "2", stream: "stdout", chunk: "b1" }) +
        line({ type: "log", id: "1", stream: "stdout", chunk: "a1" }) +
        line({ type: "meta", id: "1", meta: {} }) +
        line({ type: "log", id: "2", stream: "stderr", chunk: "b2" }) +
        line({ type: "result", id: "2", result: "two" }) +
        line({ type: "brand_new_event", id: "1" }) +
        line({ type: "log", id: "1", stream: "stdout", chunk: "a2" }) +
        line({ type: "result", id: "1", result: "one" }),
    );
    assert.equal(await one.promise, "one");
    assert.equal(await two.promise, "two");
    assert.deepEqual(seen[1], ["a1", "meta", "brand_new_event", "a2"]);
    assert.deepEqual(seen[2], ["b1", "b2"]);
  });

  it("turns an error answer into a ProtocolError with the child's code", async () => {
    const { channel } = harness();
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const { promise } = channel.request("execute", {});
    channel.feed(line({ type: "error", id: "1", code: "bad_config", message: "namespace is invalid" }));
    await assert.rejects(promise, (err) => {
      assert.ok(err instanceof ProtocolError);
      assert.equal(err.code, "bad_config");
      assert.equal(err.message, "namespace is invalid");
      assert.equal(err.fromChild, true);
      return true;
    });
  });

  it("reports what no request owns (id null errors, unknown ids, garbage) and keeps going", async () => {
    const { channel, strays } = harness();
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const { promise } = channel.request("execute", {});
    channel.feed(
      line({ type: "error", id: null, code: "line_too_long", message: "m" }) +
        line({ type: "log", id: "99", stream: "stdout", chunk: "late" }) +
        "not json at all\n" +
        "[1,2]\n" +
        "\n" +
        line({ type: "result", id: "1", result: 42 }),
    );
    assert.equal(await promise, 42);
    assert.deepEqual(
      strays.map((s) => s.type),
      ["error", "log", "unparsable_line", "not_a_message"],
    );
  });

  it("flags a first line that is not a hello", () => {
    const { channel, strays, hellos } = harness();
    channel.feed(line({ type: "log", id: "1", stream: "stdout", chunk: "x" }));
    assert.equal(hellos.length, 0);
    assert.match(strays[0].__reason, /first line was not a hello/);
  });

  it("fails every pending request at once on close, and every later one", async () => {
    const { channel } = harness();
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const a = channel.request("execute", {});
    const b = channel.request("test_environment", {});
    assert.equal(channel.pendingCount, 2);
    const boom = new ProtocolError("claude_k8s_serve_exited", "the child died");
    channel.close(boom);
    await assert.rejects(a.promise, boom);
    await assert.rejects(b.promise, boom);
    assert.equal(channel.pendingCount, 0);
    assert.equal(channel.closed, true);
    await assert.rejects(channel.request("execute", {}).promise, boom);
    assert.equal(channel.notify({ type: "cancel", id: "1" }), false);
    channel.close(new Error("again")); // idempotent
  });

  it("still delivers a final line without a newline when closed", async () => {
    const { channel } = harness();
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const { promise } = channel.request("execute", {});
    channel.feed(JSON.stringify({ type: "result", id: "1", result: "last" }));
    channel.close(new Error("eof"));
    assert.equal(await promise, "last");
  });

  it("fails everything when the child sends a line longer than the limit", async () => {
    const { channel } = harness({ maxLineBytes: 64 });
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const { promise } = channel.request("execute", {});
    channel.feed("x".repeat(100));
    await assert.rejects(promise, (err) => err.code === "line_too_long");
  });

  it("refuses to send a request longer than the limit", async () => {
    const { channel, written } = harness({ maxLineBytes: 64 });
    const { promise } = channel.request("execute", { prompt: "y".repeat(100) });
    await assert.rejects(promise, (err) => err.code === "line_too_long");
    assert.equal(written.length, 0);
  });
});
