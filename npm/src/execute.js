// `execute` and `testEnvironment`: Paperclip's calls mapped onto `claude-k8s serve` requests (docs/protocol.md).
// No Kubernetes logic here: the child owns the Job, the shim renders the prompt and relays events.
//
// Never logs ctx.authToken (it only travels inside the execute request, to the child).

import { buildRunEnv, loadServerUtils, renderPrompts } from "./prompt.js";
import { loadManifestBuilder, promptBundleParams } from "./skills.js";

export const ADAPTER_TYPE = "claude_k8s";

/** A deep copy with only JSON values (functions and cycles dropped, bigints as strings). */
export function toJsonSafe(value) {
  const ancestors = [];
  const json = JSON.stringify(value, function replacer(_key, v) {
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "function" || typeof v === "symbol") return undefined;
    if (typeof v !== "object" || v === null) return v;
    // `this` is the object holding v: unwind the ancestor stack to it, then reject v if it is an ancestor.
    while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
    if (ancestors.includes(v)) return undefined;
    ancestors.push(v);
    return v;
  });
  return json === undefined ? undefined : JSON.parse(json);
}

function failedResult(code, message) {
  return { exitCode: null, signal: null, timedOut: false, errorCode: code, errorMessage: message };
}

function errorCode(err, fallback) {
  return typeof err?.code === "string" && /^[a-z][a-z0-9_]*$/.test(err.code) ? err.code : fallback;
}

function abortReason(signal) {
  const reason = signal?.reason;
  if (reason instanceof Error) return reason.message;
  if (typeof reason === "string") return reason;
  return "cancelled by Paperclip";
}

/** ExecuteParams (docs/protocol.md) from Paperclip's AdapterExecutionContext. */
export async function buildExecuteParams(ctx) {
  const u = await loadServerUtils();
  const agent = ctx.agent ?? {};
  const config = toJsonSafe(ctx.config ?? {}) ?? {};
  const context = toJsonSafe(ctx.context ?? {}) ?? {};
  const runtime = ctx.runtime ?? {};
  // claude_local renders with the agent object as Paperclip passes it ({{agent.name}}, …).
  const input = { runId: ctx.runId, agent, config, context, runtime };
  const prompt = renderPrompts(input, u);
  const paperclipEnv = buildRunEnv(input, u);
  const promptBundle = await promptBundleParams(config, u, await loadManifestBuilder());
  const runtimeMcpServers = toJsonSafe(ctx.runtimeMcp?.getServers?.() ?? []) ?? [];
  const serverEnv = {};
  if (typeof process.env.PAPERCLIP_API_URL === "string" && process.env.PAPERCLIP_API_URL !== "") {
    serverEnv.PAPERCLIP_API_URL = process.env.PAPERCLIP_API_URL;
  }
  return {
    runId: ctx.runId,
    agent: { id: agent.id, companyId: agent.companyId, name: agent.name },
    runtime: {
      sessionId: runtime.sessionId ?? null,
      sessionParams: toJsonSafe(runtime.sessionParams ?? null),
      sessionDisplayId: runtime.sessionDisplayId ?? null,
      taskKey: runtime.taskKey ?? null,
    },
    config,
    context,
    authToken: typeof ctx.authToken === "string" ? ctx.authToken : null,
    prompt,
    paperclipEnv,
    runtimeMcpServers: Array.isArray(runtimeMcpServers) ? runtimeMcpServers : [],
    serverEnv,
    promptBundle,
  };
}

/**
 * Runs one heartbeat through the service. Resolves with the child's AdapterExecutionResult, or a failed result
 * (`exitCode: null`) when the child answers `error`, dies, or cannot be started. Never rejects.
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
  const onMessage = (message) => {
    switch (message.type) {
      case "log":
        if ((message.stream === "stdout" || message.stream === "stderr") && typeof message.chunk === "string") {
          relay("onLog", () => ctx.onLog?.(message.stream, message.chunk));
        }
        return;
      case "meta":
        if (message.meta && typeof message.meta === "object") relay("onMeta", () => ctx.onMeta?.(message.meta));
        return;
      case "event":
        if (message.event && typeof message.event === "object") relay("onEvent", () => ctx.onEvent?.(message.event));
        return;
      default:
        // Unknown event types are ignored (docs/protocol.md, "Framing").
        return;
    }
  };

  let call;
  try {
    call = await service.start("execute", params, onMessage);
  } catch (err) {
    return failedResult(errorCode(err, "claude_k8s_service_failed"), err.message);
  }

  const signal = ctx.signal;
  const onAbort = () => call.cancel(abortReason(signal));
  if (signal?.aborted) onAbort();
  else signal?.addEventListener?.("abort", onAbort, { once: true });
  try {
    const result = await call.result;
    await chain;
    if (!result || typeof result !== "object" || Array.isArray(result)) {
      return failedResult("claude_k8s_bad_result", `claude-k8s answered with a result that is not an object`);
    }
    return result;
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
    const result = await service.call("test_environment", params);
    if (result && typeof result === "object" && Array.isArray(result.checks)) return result;
    throw Object.assign(new Error("claude-k8s answered test_environment with a malformed result"), {
      code: "claude_k8s_bad_result",
    });
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
