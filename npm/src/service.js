// The one long-lived `claude-k8s serve` child (the esbuild model; docs/protocol.md, "Child lifecycle").
//
// I/O: spawns the child lazily on the first call, checks its `hello`, multiplexes calls over a channel
// (./channel.js), forwards its stderr to the console as `[claude-k8s] …`, and when it dies fails every pending
// call with the exit code or signal and the last stderr lines; the next call spawns a new child. The child is
// unref()'d while idle, so it never keeps Node alive, and re-ref()'d while a call or the handshake is pending.

import { spawn } from "node:child_process";
import fs from "node:fs";

import { createChannel, ProtocolError } from "./channel.js";

export const PROTOCOL_VERSION = 1;
const STDERR_TAIL_LINES = 20;
const STDERR_LINE_MAX = 2000;
// eslint-disable-next-line no-control-regex
const ANSI_ESCAPE = /\x1b\[[0-9;?]*[A-Za-z]/g;

// Every live child of every service in this process, for the one `exit` hook.
const liveChildren = new Set();
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of liveChildren) shutdownAtExit(child);
  });
}

// The event loop is gone: write `shutdown` synchronously if the pipe allows it, else kill. Either way the child
// also sees EOF on stdin once this process is gone, which the protocol defines as a shutdown.
function shutdownAtExit(child) {
  if (child.exited || child.stopping) return; // a stopping child already got `shutdown` and EOF
  const fd = child.proc.stdin?._handle?.fd;
  try {
    if (typeof fd === "number" && fd >= 0) {
      fs.writeSync(fd, '{"type":"shutdown"}\n');
      return;
    }
  } catch {
    // fall through to kill
  }
  try {
    child.proc.kill("SIGTERM");
  } catch {
    // already gone
  }
}

const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60 * 1000;

function defaultIdleTimeoutMs(env) {
  const raw = env?.CLAUDE_K8S_SERVE_IDLE_TIMEOUT_MS;
  const value = raw === undefined || raw === "" ? NaN : Number(raw);
  return Number.isFinite(value) && value >= 0 ? value : DEFAULT_IDLE_TIMEOUT_MS;
}

/** A failure of the service itself (the child could not start, refused the handshake, or died). */
export class ServiceError extends ProtocolError {
  constructor(code, message, extra) {
    super(code, message, extra);
    this.name = "ServiceError";
  }
}

/**
 * @param {object} options
 * @param {() => {path: string, fromEnv: boolean}} options.resolveBinary  called at each spawn; may throw
 * @param {string} options.packageVersion  the `hello.version` a bundled binary must report
 * @param {string[]} [options.args]
 * @param {NodeJS.ProcessEnv} [options.env]
 * @param {number} [options.handshakeTimeoutMs]
 * @param {number} [options.shutdownTimeoutMs]  how long `shutdown()` waits before SIGKILL
 * @param {number} [options.idleTimeoutMs]  stop a child idle this long (0: never); default from
 *   CLAUDE_K8S_SERVE_IDLE_TIMEOUT_MS, else 10 minutes
 * @param {{error: Function, warn: Function}} [options.logger]
 */
export function createService({
  resolveBinary,
  packageVersion,
  args = ["serve"],
  env = process.env,
  handshakeTimeoutMs = 15_000,
  shutdownTimeoutMs = 5_000,
  idleTimeoutMs = defaultIdleTimeoutMs(env),
  logger = console,
}) {
  let current = null; // the live child, or null

  function updateRef(child) {
    if (child.exited || child.stopping) return;
    const busy = !child.ready || child.channel.pendingCount > 0;
    armIdleTimer(child, busy);
    if (busy === child.refd) return;
    child.refd = busy;
    const method = busy ? "ref" : "unref";
    child.proc[method]?.();
    for (const stream of [child.proc.stdin, child.proc.stdout, child.proc.stderr]) stream?.[method]?.();
  }

  // An idle child is stopped after idleTimeoutMs: Paperclip has no unload hook, so this is what ends the child of
  // an adapter that was deleted. The next call starts a new one.
  function armIdleTimer(child, busy) {
    clearTimeout(child.idleTimer);
    child.idleTimer = null;
    if (busy || !(idleTimeoutMs > 0)) return;
    child.idleTimer = setTimeout(() => {
      if (!child.exited && child.channel.pendingCount === 0) {
        stop(child, new ServiceError("claude_k8s_service_idle", `idle for ${idleTimeoutMs} ms`));
      }
    }, idleTimeoutMs);
    child.idleTimer.unref?.();
  }

  function describeExit(child, code, signal) {
    const how = signal ? `was killed by signal ${signal}` : `exited with code ${code}`;
    const tail = child.stderrTail.length
      ? `; last stderr lines:\n${child.stderrTail.map((l) => `  ${l}`).join("\n")}`
      : "; it wrote nothing on stderr";
    return `claude-k8s serve (pid ${child.proc.pid}) ${how}${tail}`;
  }

  function spawnChild() {
    let binary;
    try {
      binary = resolveBinary();
    } catch (err) {
      throw err instanceof ProtocolError ? err : new ServiceError(err.code ?? "claude_k8s_binary_unavailable", err.message);
    }
    const proc = spawn(binary.path, args, { stdio: ["pipe", "pipe", "pipe"], env, windowsHide: true });
    const child = {
      proc,
      binary,
      ready: false,
      refd: true,
      exited: false,
      stopping: false,
      stderrTail: [],
      readyPromise: null,
    };

    let settleReady;
    child.readyPromise = new Promise((resolve, reject) => {
      settleReady = { resolve, reject };
    });
    child.readyPromise.catch(() => {}); // observed by callers; never an unhandled rejection here

    const failReady = (err) => {
      if (child.ready) return;
      settleReady.reject(err);
      stop(child, err);
    };

    child.channel = createChannel({
      write: (line) => {
        if (!proc.stdin.destroyed) proc.stdin.write(`${line}\n`);
      },
      onHello: (hello) => {
        if (hello.protocol !== PROTOCOL_VERSION) {
          failReady(
            new ServiceError(
              "claude_k8s_protocol_mismatch",
              `${binary.path} speaks protocol ${JSON.stringify(hello.protocol)} (version ${hello.version}); ` +
                `this package (${packageVersion}) speaks protocol ${PROTOCOL_VERSION}. Install matching versions.`,
            ),
          );
          return;
        }
        if (!binary.fromEnv && hello.version !== packageVersion) {
          failReady(
            new ServiceError(
              "claude_k8s_version_mismatch",
              `${binary.path} is version ${JSON.stringify(hello.version)} but the package is ${packageVersion}; ` +
                `the bundled binary must match the package (rebuild the package with npm/pack.sh).`,
            ),
          );
          return;
        }
        clearTimeout(timer);
        child.ready = true;
        child.version = hello.version;
        updateRef(child);
        settleReady.resolve();
      },
      onStray: (message) => {
        if (!child.ready && message.__reason) {
          failReady(
            new ServiceError(
              "claude_k8s_handshake_failed",
              `${binary.path} did not start with a hello line (got ${JSON.stringify(message).slice(0, 200)})`,
            ),
          );
          return;
        }
        if (message.type === "error") {
          logger.error(`[claude-k8s] protocol error: ${message.code}: ${message.message}`);
        } else if (message.type === "host_callback_failed") {
          logger.error(`[claude-k8s] a run callback failed: ${message.error}`);
        } else if (message.type === "unparsable_line" || message.type === "not_a_message") {
          logger.error(`[claude-k8s] ignored a malformed stdout line: ${message.line}`);
        }
        // Late lines of finished or unknown ids are ignored.
      },
    });

    const timer = setTimeout(() => {
      failReady(
        new ServiceError(
          "claude_k8s_handshake_failed",
          `${binary.path} sent no hello within ${handshakeTimeoutMs} ms${
            child.stderrTail.length ? `; last stderr lines:\n  ${child.stderrTail.join("\n  ")}` : ""
          }`,
        ),
      );
    }, handshakeTimeoutMs);
    timer.unref?.();

    proc.stdout.on("data", (chunk) => child.channel.feed(chunk));
    let stderrBuffered = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (text) => {
      stderrBuffered += text;
      let newline;
      while ((newline = stderrBuffered.indexOf("\n")) !== -1) {
        // Diagnostics only; colour codes would clutter the server log.
        const line = stderrBuffered.slice(0, newline).replace(/\r$/, "").replace(ANSI_ESCAPE, "");
        stderrBuffered = stderrBuffered.slice(newline + 1);
        if (!line.trim()) continue;
        logger.error(`[claude-k8s] ${line}`);
        child.stderrTail.push(line.length > STDERR_LINE_MAX ? `${line.slice(0, STDERR_LINE_MAX)}…` : line);
        if (child.stderrTail.length > STDERR_TAIL_LINES) child.stderrTail.shift();
      }
    });
    proc.stdin.on("error", () => {
      // EPIPE when the child is gone; its death is reported by "close".
    });

    proc.on("error", (err) => {
      // The spawn itself failed (ENOENT, EACCES, …); "close" may or may not follow.
      const error = new ServiceError(
        "claude_k8s_binary_unavailable",
        `cannot start ${binary.path}: ${err.message}`,
      );
      settleReady.reject(error);
      finish(child, error);
    });
    // "close" comes after stdout has ended, so a result written just before the exit is still delivered.
    proc.on("close", (code, signal) => {
      clearTimeout(timer);
      if (!child.stopping && child.ready && child.channel.pendingCount === 0) {
        logger.warn(`[claude-k8s] ${describeExit(child, code, signal)}; the next call starts a new one`);
      }
      const error =
        child.stopError ??
        new ServiceError("claude_k8s_serve_exited", describeExit(child, code, signal), { exitCode: code, signal });
      settleReady.reject(error);
      finish(child, error);
    });

    liveChildren.add(child);
    installExitHook();
    return child;
  }

  function finish(child, error) {
    if (child.exited) return;
    child.exited = true;
    liveChildren.delete(child);
    child.channel.close(error);
    if (current === child) current = null;
  }

  // Ends one child: `shutdown` + EOF, then SIGTERM/SIGKILL if it lingers. Pending calls fail with `reason`.
  function stop(child, reason) {
    if (child.exited || child.stopping) return;
    child.stopping = true;
    child.stopError = reason;
    clearTimeout(child.idleTimer);
    if (current === child) current = null;
    child.channel.close(reason);
    try {
      child.proc.stdin.end('{"type":"shutdown"}\n');
    } catch {
      // ignore
    }
    const term = setTimeout(() => {
      if (!child.exited) child.proc.kill("SIGTERM");
    }, shutdownTimeoutMs);
    const kill = setTimeout(() => {
      if (!child.exited) child.proc.kill("SIGKILL");
    }, shutdownTimeoutMs + 2_000);
    term.unref?.();
    kill.unref?.();
    updateRefStopping(child);
  }

  // A stopping child must not keep Node alive either.
  function updateRefStopping(child) {
    child.proc.unref?.();
    for (const stream of [child.proc.stdin, child.proc.stdout, child.proc.stderr]) stream?.unref?.();
  }

  async function ensureChild() {
    if (!current || current.exited || current.stopping) current = spawnChild();
    const child = current;
    updateRef(child);
    await child.readyPromise;
    return child;
  }

  return {
    /**
     * Starts a call. Resolves (after the handshake) to `{ id, result, cancel(reason) }`; `result` settles with the
     * child's `result`, or rejects with a ProtocolError (an `error` answer, or the child's death).
     */
    async start(type, params, onMessage) {
      const child = await ensureChild();
      const { id, promise } = child.channel.request(type, params, onMessage);
      updateRef(child);
      const result = promise.finally(() => updateRef(child));
      result.catch(() => {});
      return {
        id,
        result,
        cancel(reason) {
          if (child.exited || child.stopping || !child.channel.has(id)) return false;
          return child.channel.notify({ type: "cancel", id, ...(reason ? { reason: String(reason) } : {}) });
        },
      };
    },

    /** Starts a call and waits for its answer. */
    async call(type, params, onMessage) {
      const { result } = await this.start(type, params, onMessage);
      return result;
    },

    /** Sends `shutdown` to the child (if any) and waits until it exits (SIGKILL after the bound). */
    async shutdown(reason = "the service was shut down") {
      const child = current;
      if (!child || child.exited) return;
      const closed = new Promise((resolve) => child.proc.once("close", resolve));
      stop(child, new ServiceError("claude_k8s_service_stopped", reason));
      if (child.exited) return;
      // Someone waits for this exit: keep the loop alive until it happens (stop() unref()'d the child).
      child.proc.ref?.();
      for (const stream of [child.proc.stdout, child.proc.stderr]) stream?.ref?.();
      await closed;
    },

    /**
     * Shuts the child down once its pending calls have finished (used when Paperclip imports another copy of the
     * adapter, since it has no unload hook). A later call starts a new child: Paperclip may register this copy
     * again (its ESM cache returns it when the adapter is reinstalled from the same path).
     */
    retire() {
      const child = current;
      if (!child || child.exited || child.stopping) return;
      const reason = () => new ServiceError("claude_k8s_service_retired", "this adapter instance was replaced");
      if (child.channel.pendingCount === 0) {
        stop(child, reason());
        return;
      }
      const poll = setInterval(() => {
        if (child.exited || child.stopping) {
          clearInterval(poll);
        } else if (child.channel.pendingCount === 0) {
          clearInterval(poll);
          stop(child, reason());
        }
      }, 1_000);
      poll.unref?.();
    },

    /** The live child's PID, or null. */
    get pid() {
      return current && !current.exited ? current.proc.pid : null;
    },

    get pendingCount() {
      return current && !current.exited ? current.channel.pendingCount : 0;
    },
  };
}
