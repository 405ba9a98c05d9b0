// ExecuteParams (docs/protocol.md) from Paperclip's AdapterExecutionContext: the prompt rendered as claude_local
// renders it (./prompt.js), the run's PAPERCLIP_* env, the prompt bundle (./skills.js), the MCP servers, and
// JSON-safe copies of config and context. What the child does with them is the child's business.

import { buildRunEnv, loadServerUtils, renderPrompts } from "./prompt.js";
import { loadManifestBuilder, promptBundleParams } from "./skills.js";

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
