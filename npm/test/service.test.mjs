// The service (one `claude-k8s serve` child) and execute/testEnvironment over it. The child is
// test-support/replay-serve.mjs playing the golden corpus of test/protocol/ (the real binary's answers), with
// transport faults (a death, garbage, a huge line, silence) injected where a test needs them.
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { BinaryError, resolveBinary } from "../src/binary.js";
import { execute, executeTimeout, testEnvironment } from "../src/execute.js";
import { createService } from "../src/service.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const REPLAY = path.join(here, "..", "test-support", "replay-serve.mjs");
const CORPUS = path.join(here, "..", "..", "test", "protocol");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-shim-test-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const services = [];
after(async () => {
  for (const s of services) await s.shutdown().catch(() => {});
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Waits (at most 10 s) until `condition()` holds. */
async function until(condition) {
  for (let i = 0; i < 500 && !condition(); i++) await sleep(20);
  assert.ok(condition(), `timed out waiting for ${condition}`);
}

/** The corpus's answers to the request with `id` in `file` (default: its first request), in order. */
function answers(file, id) {
  const entries = fs.readFileSync(path.join(CORPUS, file), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const wanted = id ?? entries.find((e) => e.send)?.send.id;
  return entries.filter((e) => e.recv?.id === wanted).map((e) => e.recv);
}

function quietLogger() {
  const lines = [];
  const push = (...args) => lines.push(args.join(" "));
  return { lines, error: push, warn: push, info: push, log: push };
}

let logs = 0;
/** A service whose child replays `corpus`; `fromEnv` as if found through CLAUDE_K8S_BINARY_PATH. */
function replayService({ corpus, env = {}, fromEnv = true, packageVersion = "0.1.0", ...rest } = {}) {
  const logger = quietLogger();
  const requestLog = path.join(tmp, `requests-${++logs}.jsonl`);
  const childEnv = { ...process.env, REPLAY_CORPUS: corpus, REPLAY_LOG: requestLog, ...env };
  const service = createService({ resolveBinary: () => ({ path: REPLAY, fromEnv }), packageVersion, env: childEnv, logger, ...rest });
  services.push(service);
  const requests = () =>
    fs.existsSync(requestLog) ? fs.readFileSync(requestLog, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
  // Each spawn reads childEnv: `healed()` makes the next child a faultless one.
  return { service, logger, requests, healed: () => delete childEnv.REPLAY_FAULT };
}

function context(overrides = {}) {
  const calls = [];
  const ctx = {
    runId: "run-1",
    agent: { id: "agent-1", companyId: "company-1", name: "K8s Claude", adapterType: "claude_k8s", adapterConfig: {} },
    runtime: { sessionId: null, sessionParams: null, sessionDisplayId: null, taskKey: null },
    config: {},
    context: {},
    authToken: "secret-run-token",
    onLog: async (stream, chunk) => {
      calls.push(["log", stream, chunk]);
    },
    onMeta: async (meta) => {
      calls.push(["meta", meta]);
    },
    onEvent: async (event) => {
      calls.push(["event", event]);
    },
    onCancellationReady: async () => {
      calls.push(["cancellationReady"]);
    },
    onDispatch: () => {
      calls.push(["dispatch"]);
    },
    ...overrides,
  };
  return { ctx, calls };
}

const SUCCESS = "execute-success.jsonl";
const CANCEL = "execute-cancel.jsonl";
const NO_CLUSTER = "no-cluster.jsonl";

describe("service against the replayed corpus", () => {
  it("handshakes, relays every event in order and returns the result", async () => {
    const { service, requests } = replayService({ corpus: SUCCESS });
    const { ctx, calls } = context();
    const result = await execute(ctx, service);
    const recorded = answers(SUCCESS);
    assert.deepEqual(result, recorded.at(-1).result);
    assert.equal(result.exitCode, 0);
    const relayed = recorded.slice(0, -1).map((m) =>
      m.type === "log" ? ["log", m.stream, m.chunk] : m.type === "meta" ? ["meta", m.meta] : ["event", m.event],
    );
    assert.ok(relayed.length > 3, "the recorded run has log lines and meta");
    assert.deepEqual(calls, [["cancellationReady"], ["dispatch"], ...relayed]);
    const [sent] = requests();
    assert.equal(sent.type, "execute");
    assert.equal(sent.params.runId, "run-1");
    assert.deepEqual(sent.params.agent, { id: "agent-1", companyId: "company-1", name: "K8s Claude" });
    assert.equal(sent.params.authToken, "secret-run-token");
    assert.match(sent.params.prompt.fresh, /You are agent agent-1 \(K8s Claude\)/);
    assert.equal(sent.params.paperclipEnv.PAPERCLIP_RUN_ID, "run-1");
    assert.ok(service.pid > 0);
  });

  it("answers test_environment", async () => {
    const { service } = replayService({ corpus: NO_CLUSTER });
    const result = await testEnvironment({ companyId: "c-9", adapterType: "claude_k8s", config: {} }, service);
    assert.deepEqual(result, answers(NO_CLUSTER, "t1")[0].result);
    assert.equal(result.status, "fail");
  });

  it("runs concurrent calls over one child, each with its own lines in order", async () => {
    const { service } = replayService({ corpus: SUCCESS, env: { REPLAY_PACE_MS: "5" } });
    const expected = answers(SUCCESS).filter((m) => m.type === "log").map((m) => m.chunk);
    const runs = await Promise.all(
      [1, 2, 3].map(async (n) => {
        const chunks = [];
        const { ctx } = context({ runId: `run-${n}`, onLog: async (_s, c) => chunks.push(c) });
        return { result: await execute(ctx, service), chunks, pid: service.pid };
      }),
    );
    for (const { result, chunks } of runs) {
      assert.equal(result.exitCode, 0);
      assert.deepEqual(chunks, expected);
    }
    assert.equal(new Set(runs.map((r) => r.pid)).size, 1);
  });

  it("passes a failed result through, and turns an error answer into one", async () => {
    const config = replayService({ corpus: "config-error.jsonl" });
    const failed = await execute(context().ctx, config.service);
    assert.deepEqual(failed, answers("config-error.jsonl", "r1")[0].result);
    assert.equal(failed.errorCode, "invalid_config");
    const malformed = replayService({ corpus: "malformed-execute.jsonl" });
    const [error] = answers("malformed-execute.jsonl", "e1");
    assert.deepEqual(await execute(context({ runId: 5 }).ctx, malformed.service), {
      exitCode: null,
      signal: null,
      timedOut: false,
      errorCode: "bad_request",
      errorMessage: error.message,
    });
  });

  it("forwards ctx.signal's abort as cancel and still waits for the result", async () => {
    const { service, requests } = replayService({ corpus: CANCEL });
    const controller = new AbortController();
    const seen = [];
    const { ctx } = context({
      signal: controller.signal,
      onLog: async (_s, chunk) => {
        seen.push(chunk);
        if (seen.length === 1) controller.abort(new Error("Cancelled by a board operator"));
      },
    });
    const result = await execute(ctx, service);
    assert.equal(result.resultJson.executionCancellation.state, "acknowledged");
    assert.deepEqual(result, answers(CANCEL).at(-1).result);
    assert.deepEqual(seen, answers(CANCEL).filter((m) => m.type === "log").map((m) => m.chunk));
    const cancel = requests().find((r) => r.type === "cancel");
    assert.deepEqual(cancel, { type: "cancel", id: "1", reason: "Cancelled by a board operator" });
  });

  it("cancels at once when the signal is already aborted", async () => {
    const { service } = replayService({ corpus: CANCEL });
    const controller = new AbortController();
    controller.abort();
    const result = await execute(context({ signal: controller.signal }).ctx, service);
    assert.equal(result.resultJson.executionCancellation.state, "acknowledged");
  });

  it("fails every pending call when the child dies, naming the exit code and stderr, and respawns", async () => {
    const { service, logger, healed } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_FAULT: "mute:1,mute:2,exit:3:3" } });
    const pending = [execute(context().ctx, service), execute(context().ctx, service)];
    await until(() => service.pendingCount === 2);
    const firstPid = service.pid;
    assert.ok(firstPid);
    const results = await Promise.all([execute(context().ctx, service), ...pending]);
    for (const result of results) {
      assert.equal(result.errorCode, "claude_k8s_serve_exited");
      assert.equal(result.exitCode, null);
      assert.match(result.errorMessage, /exited with code 3/);
      assert.match(result.errorMessage, /fatal: boom/);
    }
    assert.ok(logger.lines.some((l) => l === "[claude-k8s] fatal: boom"), "stderr is forwarded with the prefix");
    assert.equal(service.pid, null);
    healed();
    const again = await execute(context({ runId: "run-a" }).ctx, service);
    assert.equal(again.errorCode, "k8s_client_unavailable", "the new child answers");
    assert.notEqual(service.pid, firstPid);
  });

  it("reports a child killed by a signal", async () => {
    const { service } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_FAULT: "mute:1" } });
    const pending = execute(context().ctx, service);
    await until(() => service.pendingCount === 1);
    process.kill(service.pid, "SIGKILL");
    const result = await pending;
    assert.equal(result.errorCode, "claude_k8s_serve_exited");
    assert.match(result.errorMessage, /killed by signal SIGKILL/);
  });

  it("retires a child that writes garbage: its calls fail saying so, the next call gets a fresh child", async () => {
    const { service, healed } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_FAULT: "mute:1,garbage:2" } });
    const first = execute(context().ctx, service);
    await until(() => service.pendingCount === 1);
    const pid = service.pid;
    const second = execute(context().ctx, service);
    for (const result of await Promise.all([first, second])) {
      assert.equal(result.errorCode, "claude_k8s_protocol_error");
      assert.match(result.errorMessage, /wrote a line that is not JSON: "this is not JSON"; it was stopped/);
    }
    healed();
    const again = await execute(context({ runId: "run-a" }).ctx, service);
    assert.equal(again.errorCode, "k8s_client_unavailable", "the new child answers");
    assert.notEqual(service.pid, pid);
  });

  it("fails only the call whose line is over the limit; the others and the next call use the same child", async () => {
    const bytes = 70 * 1024 * 1024;
    const { service, requests } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_FAULT: `mute:1,long:2:${bytes}` } });
    const other = execute(context().ctx, service); // gets no answer
    await until(() => service.pendingCount === 1);
    const pid = service.pid;
    const big = await execute(context({ runId: "run-a" }).ctx, service);
    assert.equal(big.errorCode, "line_too_long");
    assert.match(big.errorMessage, /sent a log line longer than 67108864 bytes for this call; the call was given up/);
    assert.equal(service.pid, pid);
    assert.equal(service.pendingCount, 1, "the other call is still running");
    const next = await execute(context({ runId: "run-b" }).ctx, service);
    assert.deepEqual(next, answers(NO_CLUSTER, "b")[0].result);
    assert.ok(requests().some((r) => r.type === "cancel" && r.id === "2"), "the child was told to stop that run");
    await service.shutdown();
    assert.equal((await other).errorCode, "claude_k8s_service_stopped");
  });

  it("gives up a call that gets no answer in its time, cancels it in the child, and keeps nothing of it", async () => {
    const { service, requests } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_FAULT: "mute:1" } });
    const call = await service.start("execute", { runId: "r" }, { timeoutMs: 300, timeoutHint: " (a test limit)" });
    const message = "claude-k8s serve did not answer this execute within 0.3 s (a test limit); it was given up";
    await assert.rejects(call.result, (err) => err.code === "claude_k8s_call_timeout" && err.message === message);
    assert.equal(service.pendingCount, 0);
    await until(() => requests().length === 2);
    assert.deepEqual(requests()[1], { type: "cancel", id: "1", reason: message });
  });

  it("sends only well-formed strings: a prompt cut inside an emoji", async () => {
    const { service, requests } = replayService({ corpus: NO_CLUSTER });
    const cut = "Fix the 😀 bug".slice(0, 9); // ends with the emoji's high surrogate alone
    assert.equal(cut.isWellFormed(), false);
    const result = await execute(context({ config: { promptTemplate: cut, [`key ${cut}`]: [cut] } }).ctx, service);
    assert.equal(result.errorCode, "k8s_client_unavailable", "answered, not refused");
    const line = fs.readFileSync(path.join(tmp, `requests-${logs}.jsonl`), "utf8").split("\n")[0];
    assert.doesNotMatch(line, /\\ud[89a-f][0-9a-f]{2}/i, "no lone surrogate escapes");
    const [sent] = requests();
    assert.equal(sent.params.prompt.fresh, "Fix the \ufffd");
    assert.deepEqual(sent.params.config["key Fix the \ufffd"], ["Fix the \ufffd"]);
  });

  it("refuses a request when the child has not read what is queued for it", async () => {
    const { service } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_FAULT: "deaf" }, maxQueuedBytes: 1024 * 1024, shutdownTimeoutMs: 200 });
    const big = { runId: "r", blob: "x".repeat(700 * 1024) };
    const first = await service.start("execute", big);
    const second = await service.start("execute", big);
    await assert.rejects(second.result, (err) => {
      assert.equal(err.code, "claude_k8s_queue_full");
      assert.match(err.message, /has not read \d+ bytes of earlier requests yet \(limit 1048576\); this execute request was refused/);
      return true;
    });
    assert.equal(service.pendingCount, 1);
    await service.shutdown();
    await assert.rejects(first.result, (err) => err.code === "claude_k8s_service_stopped");
  });

  it("refuses a bundled binary whose version differs from the package", async () => {
    const { service } = replayService({ corpus: NO_CLUSTER, fromEnv: false, env: { REPLAY_HELLO: '{"version":"9.9.9"}' } });
    const result = await execute(context().ctx, service);
    assert.equal(result.errorCode, "claude_k8s_version_mismatch");
    assert.match(result.errorMessage, /"9\.9\.9" but the package is 0\.1\.0/);
  });

  it("accepts another version from CLAUDE_K8S_BINARY_PATH when the protocol matches", async () => {
    const { service } = replayService({ corpus: NO_CLUSTER, fromEnv: true, env: { REPLAY_HELLO: '{"version":"9.9.9"}' } });
    assert.equal((await execute(context().ctx, service)).errorCode, "k8s_client_unavailable");
  });

  it("refuses a different protocol, even from CLAUDE_K8S_BINARY_PATH", async () => {
    const { service } = replayService({ corpus: NO_CLUSTER, fromEnv: true, env: { REPLAY_HELLO: '{"protocol":2}' } });
    const result = await testEnvironment({ companyId: "c", adapterType: "claude_k8s", config: {} }, service);
    assert.equal(result.status, "fail");
    assert.equal(result.checks[0].code, "claude_k8s_protocol_mismatch");
    assert.match(result.checks[0].message, /speaks protocol 2/);
  });

  it("gives up on a child that never says hello, and on one that starts with something else", async () => {
    const silent = replayService({
      corpus: NO_CLUSTER,
      env: { REPLAY_HELLO: "none", REPLAY_STDERR: "\x1b[2m\x1b[32mstarting up\x1b[0m" },
      handshakeTimeoutMs: 1000,
    });
    const r1 = await execute(context().ctx, silent.service);
    assert.equal(r1.errorCode, "claude_k8s_handshake_failed");
    assert.match(r1.errorMessage, /no hello within 1000 ms; last stderr lines:\n {2}starting up/);
    const garbage = replayService({ corpus: NO_CLUSTER, env: { REPLAY_HELLO: '{"type":"log","id":"x"}' } });
    const r2 = await execute(context().ctx, garbage.service);
    assert.equal(r2.errorCode, "claude_k8s_handshake_failed");
    assert.match(r2.errorMessage, /did not start with a hello line/);
  });

  it("shutdown() ends the child; the next call starts a new one", async () => {
    const exitFile = path.join(tmp, "shutdown-exit");
    const { service } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_EXIT_FILE: exitFile } });
    await testEnvironment({ companyId: "c" }, service);
    const pid = service.pid;
    await service.shutdown();
    assert.equal(service.pid, null);
    assert.equal(fs.readFileSync(exitFile, "utf8"), "exit shutdown\n");
    await testEnvironment({ companyId: "c" }, service);
    assert.ok(service.pid && service.pid !== pid);
  });

  it("retire() shuts the child down once its calls have finished; a later call starts a new one", async () => {
    const exitFile = path.join(tmp, "retire-exit");
    const { service } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_EXIT_FILE: exitFile, REPLAY_PACE_MS: "300" } });
    const running = execute(context().ctx, service);
    await until(() => service.pendingCount === 1);
    const pid = service.pid;
    service.retire();
    assert.equal((await running).errorCode, "k8s_client_unavailable", "a running call gets its answer");
    for (let i = 0; i < 50 && !fs.existsSync(exitFile); i++) await sleep(20);
    assert.equal(fs.readFileSync(exitFile, "utf8"), "exit shutdown\n");
    assert.equal(service.pid, null);
    assert.equal((await execute(context().ctx, service)).errorCode, "k8s_client_unavailable");
    assert.ok(service.pid && service.pid !== pid);
  });

  it("stops a child that stays idle for idleTimeoutMs, and starts a new one for the next call", async () => {
    const exitFile = path.join(tmp, "idle-exit");
    const { service } = replayService({ corpus: NO_CLUSTER, env: { REPLAY_EXIT_FILE: exitFile, REPLAY_PACE_MS: "500" }, idleTimeoutMs: 300 });
    const slow = await execute(context().ctx, service);
    assert.equal(slow.errorCode, "k8s_client_unavailable", "a call longer than the idle timeout is not cut");
    const pid = service.pid;
    assert.ok(pid);
    for (let i = 0; i < 50 && !fs.existsSync(exitFile); i++) await sleep(50);
    assert.equal(fs.readFileSync(exitFile, "utf8"), "exit shutdown\n");
    assert.equal(service.pid, null);
    assert.equal((await execute(context().ctx, service)).errorCode, "k8s_client_unavailable");
    assert.ok(service.pid && service.pid !== pid);
  });

  it("a pending call keeps Node alive, an idle child does not (a forked process exits by itself)", async () => {
    const exitFile = path.join(tmp, "unref-exit");
    const script = path.join(tmp, "unref-child.mjs");
    const indexUrl = new URL("../src/index.js", import.meta.url).href;
    fs.writeFileSync(
      script,
      `const m = await import(${JSON.stringify(indexUrl)});
const adapter = m.createServerAdapter();
// While a call is pending the child is ref()'d: nothing else keeps this process alive during the paced answers.
const run = await adapter.execute({
  runId: "r", agent: { id: "a", companyId: "c", name: "n" }, runtime: {}, config: {}, context: {},
  onLog: async () => {},
});
const r = await adapter.testEnvironment({ companyId: "c", adapterType: "claude_k8s", config: {} });
process.send({ errorCode: run.errorCode, status: r.status, pid: m.servicePid() });
// nothing else: with the child idle and unref()'d, this process must exit on its own
`,
    );
    const child = fork(script, [], {
      env: {
        ...process.env,
        CLAUDE_K8S_BINARY_PATH: REPLAY,
        REPLAY_CORPUS: NO_CLUSTER,
        REPLAY_PACE_MS: "300",
        REPLAY_EXIT_FILE: exitFile,
      },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const messages = [];
    child.on("message", (m) => messages.push(m));
    const code = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the forked process did not exit within 10 s (stderr: ${stderr})`));
      }, 10_000);
      child.on("exit", (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.equal(code, 0, stderr);
    assert.equal(messages[0]?.errorCode, "k8s_client_unavailable", "the paced run was answered before the process exited");
    assert.equal(messages[0]?.status, "fail");
    assert.ok(messages[0]?.pid > 0);
    // The serve child follows: it read EOF on stdin when its parent went away.
    for (let i = 0; i < 50 && !fs.existsSync(exitFile); i++) await sleep(100);
    assert.match(fs.readFileSync(exitFile, "utf8"), /^exit (shutdown|eof)\n$/);
  });
});

describe("execute's timeout", () => {
  it("comes from the run's own limits, with a day for a run without timeoutSec", () => {
    assert.equal(executeTimeout({ timeoutSec: 300, graceSec: 60 }).ms, 2 * (300 + 120 + 300) * 1000);
    assert.equal(executeTimeout({ timeoutSec: "30" }).ms, 2 * (30 + 120 + 300) * 1000, "graceSec defaults to 60");
    for (const none of [{}, { timeoutSec: 0 }, { timeoutSec: "" }, { timeoutSec: -5 }, { timeoutSec: "soon" }]) {
      assert.equal(executeTimeout(none).ms, 24 * 3600 * 1000, JSON.stringify(none));
    }
    assert.match(executeTimeout({}).hint, /set timeoutSec for longer runs/);
    assert.ok(executeTimeout({ timeoutSec: 1e300 }).ms > 2 ** 31, "clamped by the service, not here");
  });
});

describe("binary lookup", () => {
  it("prefers CLAUDE_K8S_BINARY_PATH and reports it as an override", () => {
    assert.deepEqual(resolveBinary({ env: { CLAUDE_K8S_BINARY_PATH: REPLAY } }), { path: REPLAY, fromEnv: true });
  });

  it("explains a missing or non-executable override", () => {
    assert.throws(
      () => resolveBinary({ env: { CLAUDE_K8S_BINARY_PATH: path.join(tmp, "nope") } }),
      (err) => err instanceof BinaryError && /does not exist\. Unset CLAUDE_K8S_BINARY_PATH/.test(err.message),
    );
    const plain = path.join(tmp, "not-executable");
    fs.writeFileSync(plain, "");
    fs.chmodSync(plain, 0o644);
    assert.throws(
      () => resolveBinary({ env: { CLAUDE_K8S_BINARY_PATH: plain } }),
      /is not executable \(mode 644\); run: chmod 755/,
    );
  });

  it("explains a package without its bundled binary", () => {
    assert.throws(
      () => resolveBinary({ env: {}, packageDir: tmp }),
      (err) =>
        err.code === "claude_k8s_binary_unavailable" &&
        err.message.includes(path.join(tmp, "bin", "claude-k8s")) &&
        /does not exist/.test(err.message),
    );
  });

  it("a run without a binary fails with that message instead of throwing", async () => {
    const service = createService({
      resolveBinary: () => resolveBinary({ env: {}, packageDir: tmp }),
      packageVersion: "0.1.0",
      logger: quietLogger(),
    });
    const result = await execute(context().ctx, service);
    assert.equal(result.errorCode, "claude_k8s_binary_unavailable");
    assert.match(result.errorMessage, /bin\/claude-k8s does not exist/);
  });
});
