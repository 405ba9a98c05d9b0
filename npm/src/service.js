// The one long-lived `claude-k8s serve` child (the esbuild model; docs/protocol.md, "Child lifecycle").
//
// Spawned lazily by the first call, checked by its `hello`, shared by every call over one channel (./channel.js).
// Its stderr goes to the server log as `[claude-k8s] …`. When it dies or breaks the protocol, every pending call
// fails with what happened and the next call spawns a new child. While a call is pending the child and a timer
// keep Node alive; an idle child is unref()'d and stops after the idle timeout. Nothing is needed at exit: the
// child reads EOF on stdin when this process ends, however it ends, and EOF means `shutdown`.

import { spawn } from "node:child_process";
import readline from "node:readline";

import { createChannel, encode, ProtocolError } from "./channel.js";

export const PROTOCOL_VERSION = 1;
// setTimeout fires at once for more than 2^31-1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1;

function defaultIdleTimeoutMs(env) {
  const value = Number(env?.CLAUDE_K8S_SERVE_IDLE_TIMEOUT_MS || NaN);
  return Number.isFinite(value) && value >= 0 ? value : 10 * 60 * 1000;
}

/**
 * @param {object} options
 * @param {() => {path: string, fromEnv: boolean}} options.resolveBinary  called at each spawn; may throw
 * @param {string} options.packageVersion  the `hello.version` a bundled binary must report
 * @param {number} [options.idleTimeoutMs]  stop a child idle this long (0: never); default from
 *   CLAUDE_K8S_SERVE_IDLE_TIMEOUT_MS, else 10 minutes
 */
export function createService({
  resolveBinary,
  packageVersion,
  args = ["serve"],
  env = process.env,
  handshakeTimeoutMs = 15_000,
  shutdownTimeoutMs = 5_000,
  idleTimeoutMs = defaultIdleTimeoutMs(env),
  maxQueuedBytes,
  logger = console,
}) {
  let current = null; // the live child, or null

  function spawnChild() {
    let binary;
    try {
      binary = resolveBinary();
    } catch (err) {
      throw new ProtocolError(err.code ?? "claude_k8s_binary_unavailable", err.message);
    }
    const proc = spawn(binary.path, args, { stdio: ["pipe", "pipe", "pipe"], env, windowsHide: true });
    const child = { proc, stderrTail: [], ready: false, waiting: 0, stopping: false, exited: false, retiring: false };
    const fail = (code, message) => new ProtocolError(code, `claude-k8s serve (${binary.path}, pid ${proc.pid}) ${message}`);
    child.handshake = new Promise((resolve, reject) => (child.settleHandshake = { resolve, reject }));
    child.handshake.catch(() => {}); // seen by the callers
    child.handshakeTimer = setTimeout(
      () => stop(child, fail("claude_k8s_handshake_failed", `sent no hello within ${handshakeTimeoutMs} ms${stderrTail(child)}`)),
      handshakeTimeoutMs,
    );

    child.channel = createChannel({
      write: (line) => proc.stdin.write(`${line}\n`),
      queuedBytes: () => proc.stdin.writableLength,
      maxQueuedBytes,
      onHello(hello) {
        clearTimeout(child.handshakeTimer);
        if (hello.protocol !== PROTOCOL_VERSION) {
          const why = `speaks protocol ${JSON.stringify(hello.protocol)} (version ${hello.version}); this package (${packageVersion}) speaks protocol ${PROTOCOL_VERSION}. Install matching versions.`;
          return stop(child, fail("claude_k8s_protocol_mismatch", why));
        }
        if (!binary.fromEnv && hello.version !== packageVersion) {
          const why = `is version ${JSON.stringify(hello.version)} but the package is ${packageVersion}; the bundled binary must match the package (rebuild the package with npm/pack.sh).`;
          return stop(child, fail("claude_k8s_version_mismatch", why));
        }
        child.ready = true;
        child.hello = hello;
        child.settleHandshake.resolve();
        updateRef(child);
      },
      onBroken: (err) => stop(child, fail(err.code, `${err.message}; it was stopped, the next call starts a new one`)),
      onNotice: (text) => logger.error(`[claude-k8s] ${text}`),
      onSettled: () => updateRef(child),
    });

    proc.stdout.on("data", (chunk) => child.channel.feed(chunk));
    readline.createInterface({ input: proc.stderr, crlfDelay: Infinity }).on("line", (raw) => {
      // Diagnostics only; colour codes would clutter the server log.
      const line = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ""); // eslint-disable-line no-control-regex
      if (!line.trim()) return;
      logger.error(`[claude-k8s] ${line}`);
      child.stderrTail.push(line.length > 2000 ? `${line.slice(0, 2000)}…` : line);
      if (child.stderrTail.length > 20) child.stderrTail.shift();
    });
    proc.stdin.on("error", () => {}); // EPIPE when the child is gone; "close" reports its death
    proc.on("error", (err) => {
      // The spawn itself failed (ENOENT, EACCES, …); "close" may or may not follow.
      exited(child, new ProtocolError("claude_k8s_binary_unavailable", `cannot start ${binary.path}: ${err.message}`));
    });
    // "close" comes after stdout ended, so a result written just before the exit is still delivered.
    proc.on("close", (code, signal) => {
      const how = signal ? `was killed by signal ${signal}` : `exited with code ${code}`;
      if (!child.stopping && child.channel.pendingCount === 0 && child.ready) {
        logger.warn(`[claude-k8s] serve (pid ${proc.pid}) ${how}; the next call starts a new one`);
      }
      exited(child, fail("claude_k8s_serve_exited", `${how}${stderrTail(child)}`), { exitCode: code, signal });
    });
    return child;
  }

  function stderrTail(child) {
    const tail = child.stderrTail.map((l) => `  ${l}`).join("\n");
    return tail ? `; last stderr lines:\n${tail}` : "; it wrote nothing on stderr";
  }

  function exited(child, error, extra = {}) {
    if (child.exited) return;
    child.exited = true;
    clearTimeout(child.idleTimer);
    clearTimeout(child.handshakeTimer);
    const reason = child.stopError ?? Object.assign(error, extra);
    child.settleHandshake.reject(reason);
    child.channel.close(reason);
    if (current === child) current = null;
  }

  // Ends one child: `shutdown` and EOF, then SIGTERM and SIGKILL if it lingers. Its pending calls fail with `reason`.
  function stop(child, reason) {
    if (child.stopping || child.exited) return;
    child.stopping = true;
    child.stopError = reason;
    if (current === child) current = null;
    clearTimeout(child.handshakeTimer);
    child.settleHandshake.reject(reason);
    child.channel.close(reason);
    child.proc.stdin.end(`${encode({ type: "shutdown" })}\n`);
    for (const [signal, ms] of [["SIGTERM", shutdownTimeoutMs], ["SIGKILL", shutdownTimeoutMs + 2_000]]) {
      setTimeout(() => child.exited || child.proc.kill(signal), ms).unref();
    }
    updateRef(child);
  }

  // The live child once its `hello` has come (spawned if none runs). Counted as waiting meanwhile, so that it is
  // not taken for idle between its hello and the caller's next step.
  async function handshaken() {
    if (!current) current = spawnChild();
    const child = current;
    child.waiting++;
    try {
      await child.handshake;
    } finally {
      child.waiting--;
    }
    return child;
  }

  // Busy (starting, a call pending, or someone waiting for its exit): keeps Node alive. Idle: the idle timer runs.
  function updateRef(child) {
    const busy = !child.stopping && (!child.ready || child.waiting > 0 || child.channel.pendingCount > 0);
    if (child.retiring && !busy && !child.stopping) {
      return stop(child, new ProtocolError("claude_k8s_service_retired", "this adapter instance was replaced"));
    }
    clearTimeout(child.idleTimer);
    if (!busy && !child.stopping && idleTimeoutMs > 0) {
      child.idleTimer = setTimeout(() => stop(child, new ProtocolError("claude_k8s_service_idle", `idle for ${idleTimeoutMs} ms`)), idleTimeoutMs);
      child.idleTimer.unref();
    }
    const ref = busy || child.awaited;
    for (const handle of [child.proc, child.proc.stdin, child.proc.stdout, child.proc.stderr]) {
      if (ref) handle.ref?.();
      else handle.unref?.();
    }
  }

  return {
    /**
     * Starts a call. Resolves (after the handshake) to `{ id, result, cancel(reason) }`; `result` settles with the
     * child's `result`, or rejects with a ProtocolError (an `error` answer, the child's death, the timeout).
     * @param {{onMessage?: Function, timeoutMs?: number, timeoutHint?: string}} [options]
     */
    async start(type, params, { onMessage, timeoutMs = MAX_TIMER_MS, timeoutHint = "" } = {}) {
      const child = await handshaken();
      const { id, promise } = child.channel.request(type, params, onMessage);
      updateRef(child);
      // Ref'd: a pending call keeps Node alive even where an unref()'d pipe does not come back with ref() (Node 20).
      const ms = Number.isFinite(timeoutMs) && timeoutMs > 0 ? Math.min(timeoutMs, MAX_TIMER_MS) : MAX_TIMER_MS;
      const timer = setTimeout(() => {
        const why = `claude-k8s serve did not answer this ${type} within ${Number((ms / 1000).toFixed(1))} s${timeoutHint}; it was given up`;
        child.channel.abandon(id, new ProtocolError("claude_k8s_call_timeout", why));
      }, ms);
      const result = promise.finally(() => clearTimeout(timer));
      result.catch(() => {});
      return {
        id,
        result,
        cancel: (reason) =>
          child.channel.has(id) && child.channel.notify({ type: "cancel", id, ...(reason ? { reason: String(reason) } : {}) }),
      };
    },

    /** The child's `hello` (its protocol, version and facts such as `bedrock`), starting a child if none runs. */
    async hello() {
      const child = await handshaken();
      updateRef(child);
      return child.hello;
    },

    /** Starts a call and waits for its answer. */
    async call(type, params, options) {
      return (await this.start(type, params, options)).result;
    },

    /** Sends `shutdown` to the child (if any) and waits until it exits (SIGKILL after the bound). */
    async shutdown(reason = "the service was shut down") {
      const child = current;
      if (!child) return;
      const closed = new Promise((resolve) => child.proc.once("close", resolve));
      child.awaited = true;
      stop(child, new ProtocolError("claude_k8s_service_stopped", reason));
      if (!child.exited) await closed;
    },

    /**
     * Shuts the child down once its pending calls have finished (Paperclip imports another copy of the adapter
     * and has no unload hook). A later call starts a new child: Paperclip may register this copy again.
     */
    retire() {
      if (!current) return;
      current.retiring = true;
      updateRef(current);
    },

    /** The live child's PID, or null. */
    get pid() {
      return current?.proc.pid ?? null;
    },

    get pendingCount() {
      return current?.channel.pendingCount ?? 0;
    },
  };
}
