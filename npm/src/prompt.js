// What the shim computes in JS for the child (docs/protocol.md, ExecuteParams): the prompt, rendered exactly as
// claude_local's CLI lane renders it (@paperclipai/adapter-utils 2026.916.1, `execute.js` L600–640), once for a
// fresh session and once for a resumed one, and the run's PAPERCLIP_* variables as claude_local builds them before
// it layers `config.env` (`buildClaudeRuntimeConfig`), without PAPERCLIP_API_KEY.
//
// Pure apart from loading @paperclipai/adapter-utils (lazily, so a missing dependency fails a run with a clear
// message instead of failing the adapter's load) and reading process.env through `buildPaperclipEnv`.

let utilsPromise = null;

/** `@paperclipai/adapter-utils/server-utils`, imported once. */
export function loadServerUtils() {
  utilsPromise ??= import("@paperclipai/adapter-utils/server-utils").catch((err) => {
    utilsPromise = null;
    const error = new Error(
      `cannot load @paperclipai/adapter-utils/server-utils (a dependency of paperclip-adapter-claude-k8s, used to ` +
        `render the prompt as claude_local does): ${err.message}`,
    );
    error.code = "claude_k8s_prompt_unavailable";
    throw error;
  });
  return utilsPromise;
}

/** The session id claude_local would try to resume: `sessionParams.sessionId`, else the legacy `sessionId`. */
export function candidateSessionId(runtime, u) {
  const params = u.parseObject(runtime?.sessionParams);
  return u.asString(params.sessionId, runtime?.sessionId ?? "") || "";
}

/** One rendering of claude_local's prompt; `resumedSession` is claude_local's `Boolean(sessionId)`. */
export function renderPrompt({ runId, agent, config, context }, resumedSession, u) {
  const promptTemplate = u.asString(
    config.promptTemplate,
    context.conversationMode === true
      ? u.DEFAULT_PAPERCLIP_CONVERSATION_PROMPT_TEMPLATE
      : u.DEFAULT_PAPERCLIP_AGENT_PROMPT_TEMPLATE,
  );
  const bootstrapPromptTemplate = u.asString(config.bootstrapPromptTemplate, "");
  const templateData = {
    agentId: agent.id,
    companyId: agent.companyId,
    runId,
    company: { id: agent.companyId },
    agent,
    run: { id: runId, source: "on_demand" },
    context,
  };
  const renderedBootstrapPrompt =
    !resumedSession && bootstrapPromptTemplate.trim().length > 0
      ? u.renderTemplate(bootstrapPromptTemplate, templateData).trim()
      : "";
  const taskContextNote = u.selectPaperclipTaskMarkdown(context, { resumedSession });
  const wakePrompt = u.renderPaperclipWakePrompt(context.paperclipWake, {
    resumedSession,
    conversationMode: context.conversationMode === true,
    suppressIssueDescription: taskContextNote.length > 0,
  });
  const shouldUseResumeDeltaPrompt = resumedSession && wakePrompt.length > 0;
  const renderedPrompt =
    shouldUseResumeDeltaPrompt || u.isPaperclipRecoveryWakePayload(context.paperclipWake)
      ? ""
      : u.renderTemplate(promptTemplate, templateData);
  const sessionHandoffNote = u.asString(context.paperclipSessionHandoffMarkdown, "").trim();
  const prompt = u.joinPromptSections([
    renderedBootstrapPrompt,
    wakePrompt,
    sessionHandoffNote,
    taskContextNote,
    renderedPrompt,
  ]);
  const metrics = {
    promptChars: prompt.length,
    bootstrapPromptChars: renderedBootstrapPrompt.length,
    wakePromptChars: wakePrompt.length,
    sessionHandoffChars: sessionHandoffNote.length,
    taskContextChars: taskContextNote.length,
    heartbeatPromptChars: renderedPrompt.length,
  };
  return { prompt, metrics };
}

/**
 * ExecuteParams.prompt: `fresh` always; `resume` only when there is a session to resume and it renders
 * differently (null means "same as fresh"). The child decides whether the session really resumes.
 */
export function renderPrompts(input, u) {
  const fresh = renderPrompt(input, false, u);
  const sessionId = candidateSessionId(input.runtime, u);
  const resume = sessionId ? renderPrompt(input, true, u) : null;
  const differs = resume !== null && resume.prompt !== fresh.prompt;
  return {
    fresh: fresh.prompt,
    resume: differs ? resume.prompt : null,
    freshMetrics: fresh.metrics,
    resumeMetrics: differs ? resume.metrics : fresh.metrics,
  };
}

const trimmed = (value) => (typeof value === "string" && value.trim().length > 0 ? value.trim() : null);

/** ExecuteParams.paperclipEnv: claude_local's run variables, before `config.env`, without PAPERCLIP_API_KEY. */
export function buildRunEnv({ runId, agent, config, context }, u) {
  const workspace = u.parseObject(context.paperclipWorkspace);
  const workspaceCwd = u.asString(workspace.cwd, "");
  const workspaceSource = u.asString(workspace.source, "");
  const configuredCwd = u.asString(config.cwd, "");
  // claude_local: a configured cwd replaces the agent-home default workspace.
  const effectiveWorkspaceCwd = workspaceSource === "agent_home" && configuredCwd.length > 0 ? "" : workspaceCwd;
  const workspaceHints = Array.isArray(context.paperclipWorkspaces)
    ? context.paperclipWorkspaces.filter((value) => typeof value === "object" && value !== null)
    : [];
  const runtimeServiceIntents = Array.isArray(context.paperclipRuntimeServiceIntents)
    ? context.paperclipRuntimeServiceIntents.filter((value) => typeof value === "object" && value !== null)
    : [];
  const runtimeServices = Array.isArray(context.paperclipRuntimeServices)
    ? context.paperclipRuntimeServices.filter((value) => typeof value === "object" && value !== null)
    : [];
  const runtimePrimaryUrl = u.asString(context.paperclipRuntimePrimaryUrl, "");
  // The pod mounts the shared volume at the same absolute paths as the server: a local target, paths unchanged.
  const shaped = u.shapePaperclipWorkspaceEnvForExecution({
    workspaceCwd: effectiveWorkspaceCwd,
    workspaceWorktreePath: u.asString(workspace.worktreePath, "") || null,
    workspaceHints,
    executionTargetIsRemote: false,
    executionCwd: effectiveWorkspaceCwd || configuredCwd || null,
  });

  const env = { ...u.buildPaperclipEnv(agent) };
  env.PAPERCLIP_RUN_ID = runId;
  const taskId = trimmed(context.taskId) ?? trimmed(context.issueId);
  const wakeReason = trimmed(context.wakeReason);
  const wakeCommentId = trimmed(context.wakeCommentId) ?? trimmed(context.commentId);
  const approvalId = trimmed(context.approvalId);
  const approvalStatus = trimmed(context.approvalStatus);
  const linkedIssueIds = Array.isArray(context.issueIds)
    ? context.issueIds.filter((value) => typeof value === "string" && value.trim().length > 0)
    : [];
  const wakePayloadJson = u.stringifyPaperclipWakePayload(context.paperclipWake);
  const issueWorkMode = u.readPaperclipIssueWorkModeFromContext(context);
  if (taskId) env.PAPERCLIP_TASK_ID = taskId;
  if (issueWorkMode) env.PAPERCLIP_ISSUE_WORK_MODE = issueWorkMode;
  if (wakeReason) env.PAPERCLIP_WAKE_REASON = wakeReason;
  if (wakeCommentId) env.PAPERCLIP_WAKE_COMMENT_ID = wakeCommentId;
  if (approvalId) env.PAPERCLIP_APPROVAL_ID = approvalId;
  if (approvalStatus) env.PAPERCLIP_APPROVAL_STATUS = approvalStatus;
  if (linkedIssueIds.length > 0) env.PAPERCLIP_LINKED_ISSUE_IDS = linkedIssueIds.join(",");
  if (wakePayloadJson) env.PAPERCLIP_WAKE_PAYLOAD_JSON = wakePayloadJson;
  u.applyPaperclipWorkspaceEnv(env, {
    workspaceCwd: shaped.workspaceCwd,
    workspaceSource,
    workspaceStrategy: u.asString(workspace.strategy, ""),
    workspaceId: u.asString(workspace.workspaceId, "") || null,
    workspaceRepoUrl: u.asString(workspace.repoUrl, "") || null,
    workspaceRepoRef: u.asString(workspace.repoRef, "") || null,
    workspaceBranch: u.asString(workspace.branchName, "") || null,
    workspaceWorktreePath: shaped.workspaceWorktreePath,
    agentHome: u.asString(workspace.agentHome, "") || null,
  });
  if (shaped.workspaceHints.length > 0) env.PAPERCLIP_WORKSPACES_JSON = JSON.stringify(shaped.workspaceHints);
  if (runtimeServiceIntents.length > 0) {
    env.PAPERCLIP_RUNTIME_SERVICE_INTENTS_JSON = JSON.stringify(runtimeServiceIntents);
  }
  if (runtimeServices.length > 0) env.PAPERCLIP_RUNTIME_SERVICES_JSON = JSON.stringify(runtimeServices);
  if (runtimePrimaryUrl) env.PAPERCLIP_RUNTIME_PRIMARY_URL = runtimePrimaryUrl;
  delete env.PAPERCLIP_API_KEY;
  // Only strings cross the protocol (a BTreeMap<String, String> on the Rust side).
  for (const [key, value] of Object.entries(env)) {
    if (typeof value !== "string") delete env[key];
  }
  return env;
}
