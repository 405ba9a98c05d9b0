// paperclip-adapter-claude-k8s: the Paperclip adapter `claude_k8s`.
//
// Paperclip imports this file and calls `createServerAdapter()`; it spreads the returned object into its registry,
// so the adapter is a plain object (no class instance: prototype methods would be lost). Every run is delegated to
// one long-lived `claude-k8s serve` child (./service.js), started on the first call.

import { PACKAGE_VERSION, resolveBinary } from "./binary.js";
import { agentConfigurationDoc, getConfigSchema } from "./config-schema.js";
import { ADAPTER_TYPE, execute, testEnvironment } from "./execute.js";
import { modelsList } from "./models.js";
import { createService } from "./service.js";
import { sessionCodec } from "./session-codec.js";
import { listSkills, syncSkills } from "./skills.js";

export { agentConfigurationDoc, getConfigSchema, listSkills, sessionCodec, syncSkills };
export const type = ADAPTER_TYPE;
export const label = "Claude (Kubernetes)";
export const version = PACKAGE_VERSION;

export const sessionManagement = Object.freeze({
  supportsSessionResume: true,
  nativeContextManagement: "confirmed",
  defaultSessionCompaction: Object.freeze({
    enabled: true,
    maxSessionRuns: 0,
    maxRawInputTokens: 0,
    maxSessionAgeHours: 0,
  }),
});

// Paperclip has no unload hook. `POST /api/adapters/:type/reload`, or an install from another path, imports this
// file again under a new URL and registers the new copy in place of the old one; a reinstall from a path imported
// before may hand back an earlier copy from the ESM cache. So the services of all copies are kept in one set on
// globalThis: a newly imported copy retires them all, and whichever copy is used retires the others. A retired
// service shuts its child down once its running calls end (and starts a new one only if called again). A deleted
// adapter's child is ended by the service's idle timeout.
const SERVICES_KEY = Symbol.for("paperclip-adapter-claude-k8s.services");
const services = (globalThis[SERVICES_KEY] ??= new Set());
for (const old of services) old.retire();

let service = null;

function getService() {
  if (!service) {
    service = createService({
      resolveBinary: () => resolveBinary(),
      packageVersion: PACKAGE_VERSION,
    });
    services.add(service);
  }
  for (const other of services) if (other !== service) other.retire();
  return service;
}

/** Stops the `claude-k8s serve` child, if one runs (it is started again by the next call). */
export async function shutdownService() {
  const current = service;
  if (current) await current.shutdown("shutdownService() was called");
}

/** The PID of the running `claude-k8s serve` child, or null (for diagnostics and tests). */
export function servicePid() {
  return service?.pid ?? null;
}

export function createServerAdapter() {
  // claude_local's static `models` is its Anthropic list whatever the env (Paperclip counts it in GET
  // /api/adapters and offers it when listModels finds none); the list a server on Bedrock offers is listModels'.
  const models = modelsList(false);
  return {
    type: ADAPTER_TYPE,
    execute: (ctx) => execute(ctx, getService()),
    testEnvironment: (ctx) => testEnvironment(ctx, getService()),
    sessionCodec,
    sessionManagement,
    models,
    // The binary decides whether runs use Bedrock (its `hello.bedrock`, the rule the Job's claude is given), so the
    // list the UI offers always matches what a run will do.
    listModels: async () => modelsList((await getService().hello()).bedrock === true),
    agentConfigurationDoc,
    getConfigSchema: () => getConfigSchema(),
    supportsLocalAgentJwt: true,
    // claude_local's capabilities: the UI's instructions editor (the file at `instructionsFilePath`) and skills
    // panel; skills are read from config.paperclipRuntimeSkills and copied into the run's prompt bundle by the
    // child, so Paperclip need not materialize them; Paperclip's tools arrive as MCP servers (`--mcp-config`).
    supportsInstructionsBundle: true,
    instructionsPathKey: "instructionsFilePath",
    requiresMaterializedRuntimeSkills: false,
    runtimeToolDelivery: "native_mcp",
    listSkills,
    syncSkills,
  };
}

export default createServerAdapter;
