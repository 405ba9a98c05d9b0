// The pure channel: JSON Lines framing, request ids, routing of interleaved answers, what fails one call and what
// breaks the channel, fail-all on close, well-formed strings.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { createChannel, encode, ProtocolError } from "../src/channel.js";

function harness(options = {}) {
  const written = [];
  const notices = [];
  const hellos = [];
  const broken = [];
  const channel = createChannel({
    write: (line) => written.push(line),
    onHello: (h) => hellos.push(h),
    onNotice: (text) => notices.push(text),
    onBroken: (err) => {
      broken.push(err);
      channel.close(err);
    },
    ...options,
  });
  return { channel, written, notices, hellos, broken };
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

  it("tolerates what hurts no call (an id-null error, a late line of a finished call) and keeps going", async () => {
    const { channel, notices, broken } = harness();
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const { promise } = channel.request("execute", {});
    channel.feed(
      line({ type: "error", id: null, code: "bad_request", message: "m" }) +
        line({ type: "log", id: "99", stream: "stdout", chunk: "late" }) +
        "\n" +
        line({ type: "result", id: "1", result: 42 }),
    );
    assert.equal(await promise, 42);
    assert.deepEqual(notices, ["claude-k8s serve could not read a request: bad_request: m"]);
    assert.deepEqual(broken, []);
  });

  it("is broken by a line that is not JSON or not a message, and by a second hello", async () => {
    for (const [text, words] of [
      ["not json at all\n", /wrote a line that is not JSON: "not json at all"/],
      ["[1,2]\n", /wrote a line that is not a message: "\[1,2\]"/],
      [line({ type: "hello", protocol: 1 }), /said hello a second time/],
    ]) {
      const { channel, broken } = harness();
      channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
      const { promise } = channel.request("execute", {});
      channel.feed(text);
      assert.equal(broken.length, 1, text);
      assert.equal(broken[0].code, "claude_k8s_protocol_error");
      assert.match(broken[0].message, words);
      await assert.rejects(promise, broken[0]);
    }
  });

  it("is broken by a first line that is not a hello", () => {
    const { channel, broken, hellos } = harness();
    channel.feed(line({ type: "log", id: "1", stream: "stdout", chunk: "x" }));
    assert.equal(hellos.length, 0);
    assert.equal(broken[0].code, "claude_k8s_handshake_failed");
    assert.match(broken[0].message, /did not start with a hello line/);
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

  it("fails only the call a line over the limit belongs to, cancels it in the child, and keeps framing", async () => {
    const { channel, written, broken } = harness({ maxLineBytes: 64 });
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const big = channel.request("execute", {});
    const other = channel.request("execute", {});
    channel.feed(`{"type":"log","id":"1","stream":"stdout","chunk":"${"x".repeat(30)}`);
    channel.feed(`${"x".repeat(100)}"}\n${line({ type: "result", id: "2", result: "fine" })}`);
    await assert.rejects(big.promise, (err) => {
      assert.equal(err.code, "line_too_long");
      assert.match(err.message, /sent a log line longer than 64 bytes for this call; the call was given up/);
      return true;
    });
    assert.equal(await other.promise, "fine");
    assert.deepEqual(broken, []);
    assert.deepEqual(JSON.parse(written.at(-1)), { type: "cancel", id: "1", reason: (await big.promise.catch((e) => e)).message });
  });

  it("frames a 70 MiB line in 64 KiB chunks without holding more than the limit", () => {
    const { channel, notices } = harness();
    channel.feed(line({ type: "hello", protocol: 1, version: "x" }));
    const chunk = Buffer.alloc(64 * 1024, "A".charCodeAt(0));
    for (let sent = 0; sent < 70 * 1024 * 1024; sent += chunk.length) channel.feed(chunk);
    channel.feed("\n");
    assert.match(notices[0], /dropped a line longer than 67108864 bytes: "AAAA/);
  });

  it("refuses to send a request longer than the limit", async () => {
    const { channel, written } = harness({ maxLineBytes: 64 });
    const { promise } = channel.request("execute", { prompt: "y".repeat(100) });
    await assert.rejects(promise, (err) => err.code === "line_too_long");
    assert.equal(written.length, 0);
  });

  it("refuses a request while too much waits for the child to read it", async () => {
    let queued = 0;
    const { channel, written } = harness({ queuedBytes: () => queued, maxQueuedBytes: 100 });
    const first = channel.request("execute", { prompt: "y".repeat(50) });
    queued = 80;
    const second = channel.request("execute", { prompt: "y".repeat(50) });
    await assert.rejects(second.promise, (err) => err.code === "claude_k8s_queue_full" && /limit 100/.test(err.message));
    assert.equal(written.length, 1);
    assert.ok(channel.has(first.id));
    assert.equal(channel.notify({ type: "cancel", id: first.id }), true, "a cancel is never refused");
  });

  it("sends lone surrogates as U+FFFD, in values and keys", () => {
    const cut = "emoji 😀".slice(0, -1);
    const text = encode({ [cut]: [cut, { nested: cut }], fine: "😀" });
    assert.doesNotMatch(text, /\\ud[89a-f]/i);
    assert.deepEqual(JSON.parse(text), { "emoji \ufffd": ["emoji \ufffd", { nested: "emoji \ufffd" }], fine: "😀" });
  });
});
