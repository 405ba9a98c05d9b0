// Runtime skills as claude_local handles them (@paperclipai/adapter-claude-local 2026.916.1, `server/skills.js` and
// the prompt-bundle part of `execute.js`), with Paperclip's own helpers so the selection stays the server's:
// - `listSkills` / `syncSkills`: the snapshot the Paperclip UI's skills panel shows. Skills are mounted per run
//   (mode "ephemeral"), so syncing only reports the state; Paperclip stores the desired set itself.
// - `promptBundleParams`: ExecuteParams.promptBundle (docs/protocol.md), i.e. which skills the child copies into
//   the run's prompt bundle, the company skill-library manifest appended to the instructions, and the instance
//   root the bundle lives under. The child writes the bundle (it owns the shared volume).
//
// Pure apart from loading the helpers and reading the skill directories Paperclip names.

import path from "node:path";
import { fileURLToPath } from "node:url";

import { loadServerUtils } from "./prompt.js";

const MODULE_DIR = path.dirname(fileURLToPath(import.meta.url));
/** Claude's HOME in every Job pod: skills installed there by hand are "external" to Paperclip. */
const POD_SKILLS_HOME = "/paperclip/.claude/skills";

let manifestPromise = null;

/** `@paperclipai/adapter-utils/skill-library-manifest`, imported once. */
export function loadManifestBuilder() {
  manifestPromise ??= import("@paperclipai/adapter-utils/skill-library-manifest").catch((err) => {
    manifestPromise = null;
    throw err;
  });
  return manifestPromise;
}

/** The runtime skill entries Paperclip offers this agent and the keys the agent gets (claude_local's resolver). */
export async function resolveSkills(config, u) {
  const available = await u.readPaperclipRuntimeSkillEntries(config ?? {}, MODULE_DIR);
  const desired = u.resolveLegacyPaperclipDesiredSkillNames(config ?? {}, available);
  return { available, desired };
}

/** ExecuteParams.promptBundle. `env` is the server process's (for the instance root). */
export async function promptBundleParams(config, u, manifest, env = process.env) {
  const { available, desired } = await resolveSkills(config, u);
  const desiredSet = new Set(desired);
  const warnings = [];
  const skills = [];
  for (const entry of available) {
    if (!desiredSet.has(entry.key)) continue;
    if (u.isPaperclipSkillSourceMissing(entry)) {
      // A missing source would fail the whole bundle; claude_local skips it with a warning, and so do we.
      warnings.push(
        `skill "${entry.key}" is enabled for this agent but its files are unavailable and it was not mounted` +
          (entry.missingDetail ? `: ${entry.missingDetail}` : "."),
      );
      continue;
    }
    skills.push({ key: entry.key, runtimeName: entry.runtimeName, source: entry.source });
  }
  let instanceRoot = null;
  try {
    instanceRoot = u.resolvePaperclipInstanceRootForAdapter({ env });
  } catch (err) {
    warnings.push(`cannot resolve Paperclip's instance root (${err.message}); the bundle goes under /paperclip/claude-k8s`);
  }
  return {
    skills,
    skillLibraryManifest: manifest.buildSkillLibraryManifestMarkdown({ entries: available, desiredSkillKeys: desiredSet }),
    instanceRoot,
    warnings,
  };
}

async function snapshot(config) {
  const u = await loadServerUtils();
  const { available, desired } = await resolveSkills(config, u);
  const installed = await u.readInstalledSkillTargets(POD_SKILLS_HOME);
  return u.buildRuntimeMountedSkillSnapshot({
    adapterType: "claude_k8s",
    availableEntries: available,
    desiredSkills: desired,
    configuredDetail: "Copied into the run's prompt bundle on the shared volume (/paperclip) at the next heartbeat.",
    externalInstalled: installed,
    externalLocationLabel: "/paperclip/.claude/skills",
    externalDetail: "Installed outside Paperclip management in the Claude skills home of the Job pods.",
    skillsHome: POD_SKILLS_HOME,
  });
}

/** ServerAdapterModule.listSkills. */
export async function listSkills(ctx) {
  return snapshot(ctx?.config ?? {});
}

/** ServerAdapterModule.syncSkills: skills are mounted per run, so there is nothing to install; report the state. */
export async function syncSkills(ctx, _desiredSkills) {
  return snapshot(ctx?.config ?? {});
}
