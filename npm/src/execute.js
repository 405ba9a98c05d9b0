// `execute` and `testEnvironment`: Paperclip's calls as `claude-k8s serve` requests (docs/protocol.md). The child
// owns the Job; this relays its events in order and turns every failure into a result. Never logs ctx.authToken.

import { buildExecuteParams, toJsonSafe } from "./params.js";

export const ADAPTER_TYPE = "claude_k8s";

// How long a call may wait for its answer (docs/protocol.md, "Timeouts"): two attempts (the unknown-session retry),
// each the run's own limit, the pod's termination grace twice (stopping, then waiting for the pod to be gone) and
// 5 minutes for what serve does around it; a run without `timeoutSec` gets a day.
const ATTEMPTS = 2;
const SERVE_SLACK_SEC = 300;
const NO_LIMIT_SEC = 24 * 60 * 60;
const TEST_ENVIRONMENT_TIMEOUT_MS = 2 * 60 * 1000;

/** The execute call's timeout for a config, and the words that explain it. */
export function executeTimeout(config) {
  const seconds = (key, fallback) => {
    const v = config?.[key] === "" || config?.[key] == null ? fallback : Number(config[key]);
    return Number.isFinite(v) && v >= 0 ? v : fallback;
  };
  const timeoutSec = seconds("timeoutSec", 0);
  if (timeoutSec === 0) {
    return { ms: NO_LIMIT_SEC * 1000, hint: " (a run without timeoutSec is given up after 24 h: set timeoutSec for longer runs)" };
  }
  const graceSec = seconds("graceSec", 60);
  const total = ATTEMPTS * (timeoutSec + 2 * graceSec + SERVE_SLACK_SEC);
  return { ms: total * 1000, hint: ` (twice timeoutSec ${timeoutSec} and graceSec ${graceSec}, plus serve's slack)` };
}

function failedResult(code, message) {
  return { exitCode: null, signal: null, timedOut: false, errorCode: code, errorMessage: message };
}

function errorCode(err, fallback) {
  return typeof err?.code === "string" && /^[a-z][a-z0-9_]*$/.test(err.code) ? err.code : fallback;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Runs one heartbeat through the service. Resolves with the child's AdapterExecutionResult, or a failed result
 * (`exitCode: null`) when the child answers `error`, dies, times out or cannot be started. Never rejects.
 */
export async function execute(ctx, service, logger = console) {
  let params;
  try {
    params = await buildExecuteParams(ctx);
  } catch (err) {
    return failedResult(errorCode(err, "claude_k8s_prompt_failed"), `claude_k8s could not prepare the run: ${err.message}`);
  }
  await ctx.onCancellationReady?.();
  ctx.onDispatch?.();

  // Callbacks run one after the other, in the order the child sent the events, and all finish before the result.
  let chain = Promise.resolve();
  const relay = (what, fn) => {
    chain = chain.then(fn).catch((err) => logger.warn?.(`[claude-k8s] ${what} callback failed: ${err?.message ?? err}`));
  };
  const onMessage = (m) => {
    if (m.type === "log" && (m.stream === "stdout" || m.stream === "stderr") && typeof m.chunk === "string") {
      relay("onLog", () => ctx.onLog?.(m.stream, m.chunk));
    } else if (m.type === "meta" && isObject(m.meta)) {
      relay("onMeta", () => ctx.onMeta?.(m.meta));
    } else if (m.type === "event" && isObject(m.event)) {
      relay("onEvent", () => ctx.onEvent?.(m.event));
    } // unknown event types are ignored (docs/protocol.md, "Framing")
  };

  const { ms, hint } = executeTimeout(params.config);
  let call;
  try {
    call = await service.start("execute", params, { onMessage, timeoutMs: ms, timeoutHint: hint });
  } catch (err) {
    return failedResult(errorCode(err, "claude_k8s_service_failed"), err.message);
  }
  const signal = ctx.signal;
  const onAbort = () => {
    const reason = signal.reason;
    call.cancel(reason instanceof Error ? reason.message : typeof reason === "string" ? reason : "cancelled by Paperclip");
  };
  try {
    if (signal?.aborted) onAbort();
    else signal?.addEventListener?.("abort", onAbort, { once: true });
    const result = await call.result;
    await chain;
    return isObject(result) ? result : failedResult("claude_k8s_bad_result", "claude-k8s answered with a result that is not an object");
  } catch (err) {
    await chain;
    return failedResult(errorCode(err, "claude_k8s_error"), err.message);
  } finally {
    signal?.removeEventListener?.("abort", onAbort);
  }
}

/** AdapterEnvironmentTestResult from the child; a failed check when the child cannot answer. Never rejects. */
export async function testEnvironment(ctx, service) {
  const params = {
    companyId: ctx?.companyId ?? "",
    adapterType: ctx?.adapterType ?? ADAPTER_TYPE,
    config: toJsonSafe(ctx?.config ?? {}) ?? {},
  };
  try {
    const result = await service.call("test_environment", params, { timeoutMs: TEST_ENVIRONMENT_TIMEOUT_MS });
    if (isObject(result) && Array.isArray(result.checks)) return result;
    throw Object.assign(new Error("claude-k8s answered test_environment with a malformed result"), { code: "claude_k8s_bad_result" });
  } catch (err) {
    return {
      adapterType: ADAPTER_TYPE,
      status: "fail",
      checks: [
        {
          code: errorCode(err, "claude_k8s_service_failed"),
          level: "error",
          message: `The claude-k8s service could not run the environment checks: ${err.message}`,
          hint: "See the Paperclip server log ([claude-k8s] lines) for the service's own diagnostics.",
        },
      ],
      testedAt: new Date().toISOString(),
    };
  }
}
