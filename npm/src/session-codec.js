// The session codec, field-compatible with claude_local's (`@paperclipai/adapter-claude-local` `server/index.js`):
// an agent moved between claude_local and claude_k8s keeps its saved session. Pure.
//
// Kept: sessionId (or session_id), cwd (or workdir/folder), promptBundleKey (or prompt_bundle_key),
// mcpServerIdentity, workspaceId (or workspace_id), repoUrl (or repo_url), repoRef (or repo_ref). Without a session
// id there is nothing to resume: claude_local then hands over to its ACP codec, which this adapter does not have.

function nonEmpty(value) {
  return typeof value === "string" && value.trim().length > 0 ? value.trim() : null;
}

function normalize(raw) {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return null;
  const sessionId = nonEmpty(raw.sessionId) ?? nonEmpty(raw.session_id);
  if (!sessionId) return null;
  const optional = {
    cwd: nonEmpty(raw.cwd) ?? nonEmpty(raw.workdir) ?? nonEmpty(raw.folder),
    promptBundleKey: nonEmpty(raw.promptBundleKey) ?? nonEmpty(raw.prompt_bundle_key),
    mcpServerIdentity: nonEmpty(raw.mcpServerIdentity),
    workspaceId: nonEmpty(raw.workspaceId) ?? nonEmpty(raw.workspace_id),
    repoUrl: nonEmpty(raw.repoUrl) ?? nonEmpty(raw.repo_url),
    repoRef: nonEmpty(raw.repoRef) ?? nonEmpty(raw.repo_ref),
  };
  const out = { sessionId };
  for (const [key, value] of Object.entries(optional)) if (value) out[key] = value;
  return out;
}

export const sessionCodec = {
  deserialize(raw) {
    return normalize(raw);
  },
  serialize(params) {
    return normalize(params);
  },
  getDisplayId(params) {
    if (!params || typeof params !== "object") return null;
    return nonEmpty(params.sessionId) ?? nonEmpty(params.session_id) ?? null;
  },
};
