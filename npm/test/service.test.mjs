// The service (one `claude-k8s serve` child) and execute/testEnvironment over it, against the FAKE child
// test-support/fake-claude-k8s-serve.mjs: a stand-in for the real binary that speaks the protocol with scripted behaviour.
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { BinaryError, resolveBinary } from "../src/binary.js";
import { execute, testEnvironment } from "../src/execute.js";
import { createService } from "../src/service.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const FAKE = path.join(here, "..", "test-support", "fake-claude-k8s-serve.mjs");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-shim-test-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const services = [];
after(async () => {
  for (const s of services) await s.shutdown().catch(() => {});
});

function quietLogger() {
  const lines = [];
  const push = (...args) => lines.push(args.join(" "));
  return { lines, error: push, warn: push, info: push, log: push };
}

/** A service whose child is the fake; `fromEnv` as if found through CLAUDE_K8S_BINARY_PATH. */
function fakeService({ env = {}, fromEnv = true, packageVersion = "0.1.0", ...rest } = {}) {
  const logger = quietLogger();
  const service = createService({
    resolveBinary: () => ({ path: FAKE, fromEnv }),
    packageVersion,
    env: { ...process.env, ...env },
    logger,
    ...rest,
  });
  services.push(service);
  return { service, logger };
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

describe("service against the fake child", () => {
  it("handshakes, relays events in order and returns the result", async () => {
    const { service } = fakeService();
    const { ctx, calls } = context();
    const result = await execute(ctx, service);
    assert.equal(result.exitCode, 0);
    assert.equal(result.summary, "done");
    assert.deepEqual(
      calls.map((c) => c[0] + (c[1] && typeof c[1] === "string" ? `:${c[1]}` : "")),
      ["cancellationReady", "dispatch", "log:stdout", "meta", "log:stderr", "event", "log:stdout"],
    );
    assert.equal(calls[4][2], "[claude-k8s] pod scheduled\n");
    assert.deepEqual(calls[5][1], { eventType: "fake.progress", message: "half way" });
    const sent = result.resultJson.echoedParams;
    assert.equal(sent.runId, "run-1");
    assert.deepEqual(sent.agent, { id: "agent-1", companyId: "company-1", name: "K8s Claude" });
    assert.equal(sent.authToken, "secret-run-token");
    assert.match(sent.prompt.fresh, /You are agent agent-1 \(K8s Claude\)/);
    assert.equal(sent.paperclipEnv.PAPERCLIP_RUN_ID, "run-1");
    assert.ok(service.pid > 0);
  });

  it("answers test_environment", async () => {
    const { service } = fakeService();
    const result = await testEnvironment({ companyId: "c-9", adapterType: "claude_k8s", config: {} }, service);
    assert.equal(result.status, "pass");
    assert.equal(result.checks[0].message, "company c-9");
  });

  it("runs concurrent calls over one child", async () => {
    const { service } = fakeService();
    const runs = await Promise.all(
      [1, 2, 3].map(async () => {
        const chunks = [];
        const { ctx } = context({ config: { fake: "interleave" }, onLog: async (_s, c) => chunks.push(c) });
        const result = await execute(ctx, service);
        return { result, chunks };
      }),
    );
    const pids = new Set();
    for (const { result, chunks } of runs) {
      assert.equal(result.exitCode, 0);
      assert.equal(chunks.length, 2);
      const [id] = chunks[0].split(" ");
      assert.deepEqual(chunks, [`${id} first\n`, `${id} second\n`]);
      pids.add(service.pid);
    }
    assert.equal(pids.size, 1);
  });

  it("turns an error answer into a failed result", async () => {
    const { service } = fakeService();
    const { ctx } = context({ config: { fake: "error" } });
    assert.deepEqual(await execute(ctx, service), {
      exitCode: null,
      signal: null,
      timedOut: false,
      errorCode: "bad_config",
      errorMessage: "namespace: not a valid name",
    });
  });

  it("forwards ctx.signal's abort as cancel and still waits for the result", async () => {
    const { service } = fakeService();
    const controller = new AbortController();
    const seen = [];
    const { ctx } = context({
      config: { fake: "hang" },
      signal: controller.signal,
      onLog: async (_s, chunk) => {
        seen.push(chunk);
        if (chunk.includes("job created")) controller.abort(new Error("Cancelled by a board operator"));
      },
    });
    const result = await execute(ctx, service);
    assert.equal(result.resultJson.executionCancellation.state, "acknowledged");
    assert.equal(result.resultJson.reason, "Cancelled by a board operator");
    assert.deepEqual(seen, ["[claude-k8s] job created\n", "[claude-k8s] cancelled: Cancelled by a board operator\n"]);
  });

  it("cancels at once when the signal is already aborted", async () => {
    const { service } = fakeService();
    const controller = new AbortController();
    controller.abort();
    const { ctx } = context({ config: { fake: "hang" }, signal: controller.signal });
    const result = await execute(ctx, service);
    assert.equal(result.resultJson.executionCancellation.state, "acknowledged");
  });

  it("fails every pending call when the child dies, naming the exit code and stderr, and respawns", async () => {
    const { service, logger } = fakeService();
    const { ctx: hanging } = context({ config: { fake: "hang" } });
    const pending = execute(hanging, service);
    const { ctx: other } = context({ config: { fake: "slow:5000" } });
    const pending2 = execute(other, service);
    await new Promise((r) => setTimeout(r, 200));
    const firstPid = service.pid;
    assert.ok(firstPid);
    const { ctx: dying } = context({ config: { fake: "die" } });
    const results = await Promise.all([execute(dying, service), pending, pending2]);
    for (const result of results) {
      assert.equal(result.errorCode, "claude_k8s_serve_exited");
      assert.equal(result.exitCode, null);
      assert.match(result.errorMessage, /exited with code 3/);
      assert.match(result.errorMessage, /fatal: boom/);
    }
    assert.ok(logger.lines.some((l) => l === "[claude-k8s] fatal: boom"), "stderr is forwarded with the prefix");
    assert.equal(service.pid, null);
    const { ctx } = context();
    const again = await execute(ctx, service);
    assert.equal(again.exitCode, 0);
    assert.notEqual(service.pid, firstPid);
  });

  it("reports a child killed by a signal", async () => {
    const { service } = fakeService();
    const { ctx } = context({ config: { fake: "hang" } });
    const pending = execute(ctx, service);
    await new Promise((r) => setTimeout(r, 200));
    process.kill(service.pid, "SIGKILL");
    const result = await pending;
    assert.equal(result.errorCode, "claude_k8s_serve_exited");
    assert.match(result.errorMessage, /killed by signal SIGKILL/);
  });

  it("refuses a bundled binary whose version differs from the package", async () => {
    const { service } = fakeService({ fromEnv: false, env: { FAKE_SERVE_VERSION: "9.9.9" } });
    const { ctx } = context();
    const result = await execute(ctx, service);
    assert.equal(result.errorCode, "claude_k8s_version_mismatch");
    assert.match(result.errorMessage, /"9\.9\.9" but the package is 0\.1\.0/);
  });

  it("accepts another version from CLAUDE_K8S_BINARY_PATH when the protocol matches", async () => {
    const { service } = fakeService({ fromEnv: true, env: { FAKE_SERVE_VERSION: "9.9.9" } });
    const { ctx } = context();
    assert.equal((await execute(ctx, service)).exitCode, 0);
  });

  it("refuses a different protocol, even from CLAUDE_K8S_BINARY_PATH", async () => {
    const { service } = fakeService({ fromEnv: true, env: { FAKE_SERVE_PROTOCOL: "2" } });
    const result = await testEnvironment({ companyId: "c", adapterType: "claude_k8s", config: {} }, service);
    assert.equal(result.status, "fail");
    assert.equal(result.checks[0].code, "claude_k8s_protocol_mismatch");
    assert.match(result.checks[0].message, /speaks protocol 2/);
  });

  it("gives up on a child that never says hello, and on one that starts with something else", async () => {
    const silent = fakeService({ env: { FAKE_SERVE_HELLO: "none", FAKE_SERVE_STDERR: "\x1b[2m\x1b[32mstarting up\x1b[0m" }, handshakeTimeoutMs: 300 });
    const r1 = await execute(context().ctx, silent.service);
    assert.equal(r1.errorCode, "claude_k8s_handshake_failed");
    assert.match(r1.errorMessage, /no hello within 300 ms; last stderr lines:\n {2}starting up/);
    const garbage = fakeService({ env: { FAKE_SERVE_HELLO: "garbage" } });
    const r2 = await execute(context().ctx, garbage.service);
    assert.equal(r2.errorCode, "claude_k8s_handshake_failed");
  });

  it("shutdown() ends the child; the next call starts a new one", async () => {
    const exitFile = path.join(tmp, "shutdown-exit");
    const { service } = fakeService({ env: { FAKE_SERVE_EXIT_FILE: exitFile } });
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
    const { service } = fakeService({ env: { FAKE_SERVE_EXIT_FILE: exitFile } });
    const { ctx } = context({ config: { fake: "slow:300" } });
    const running = execute(ctx, service);
    await new Promise((r) => setTimeout(r, 100));
    const pid = service.pid;
    service.retire();
    assert.equal((await running).exitCode, 0, "a running call finishes");
    for (let i = 0; i < 50 && !fs.existsSync(exitFile); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(fs.readFileSync(exitFile, "utf8"), "exit shutdown\n");
    assert.equal(service.pid, null);
    assert.equal((await execute(context().ctx, service)).exitCode, 0);
    assert.ok(service.pid && service.pid !== pid);
  });

  it("stops a child that stays idle for idleTimeoutMs, and starts a new one for the next call", async () => {
    const exitFile = path.join(tmp, "idle-exit");
    const { service } = fakeService({ env: { FAKE_SERVE_EXIT_FILE: exitFile }, idleTimeoutMs: 300 });
    const { ctx } = context({ config: { fake: "slow:500" } });
    assert.equal((await execute(ctx, service)).exitCode, 0, "a call longer than the idle timeout is not cut");
    const pid = service.pid;
    assert.ok(pid);
    for (let i = 0; i < 50 && !fs.existsSync(exitFile); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(fs.readFileSync(exitFile, "utf8"), "exit shutdown\n");
    assert.equal(service.pid, null);
    assert.equal((await execute(context().ctx, service)).exitCode, 0);
    assert.ok(service.pid && service.pid !== pid);
  });

  it("an idle child does not keep Node alive (a forked process exits by itself)", async () => {
    const exitFile = path.join(tmp, "unref-exit");
    const script = path.join(tmp, "unref-child.mjs");
    const indexUrl = new URL("../src/index.js", import.meta.url).href;
    fs.writeFileSync(
      script,
      `const m = await import(${JSON.stringify(indexUrl)});
const adapter = m.createServerAdapter();
// While a call is pending the child is ref()'d: nothing else keeps this process alive during the 300 ms.
const run = await adapter.execute({
  runId: "r", agent: { id: "a", companyId: "c", name: "n" }, runtime: {}, config: { fake: "slow:300" }, context: {},
  onLog: async () => {},
});
const r = await adapter.testEnvironment({ companyId: "c", adapterType: "claude_k8s", config: {} });
process.send({ exitCode: run.exitCode, status: r.status, pid: m.servicePid() });
// nothing else: with the child idle and unref()'d, this process must exit on its own
`,
    );
    const child = fork(script, [], {
      env: { ...process.env, CLAUDE_K8S_BINARY_PATH: FAKE, FAKE_SERVE_EXIT_FILE: exitFile },
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
    assert.equal(messages[0]?.exitCode, 0, "the slow run completed before the process exited");
    assert.equal(messages[0]?.status, "pass");
    assert.ok(messages[0]?.pid > 0);
    // The serve child follows: it got `shutdown` (exit hook) or EOF when its parent went away.
    for (let i = 0; i < 50 && !fs.existsSync(exitFile); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(fs.readFileSync(exitFile, "utf8"), /^exit (shutdown|eof)\n$/);
  });
});

describe("binary lookup", () => {
  it("prefers CLAUDE_K8S_BINARY_PATH and reports it as an override", () => {
    assert.deepEqual(resolveBinary({ env: { CLAUDE_K8S_BINARY_PATH: FAKE } }), { path: FAKE, fromEnv: true });
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
