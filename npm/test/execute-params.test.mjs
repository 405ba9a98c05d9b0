// ExecuteParams as the shim builds them: both prompts (claude_local's CLI-lane rendering, through
// @paperclipai/adapter-utils), the run's PAPERCLIP_* env, MCP servers, server env; and that no token is logged.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { execute } from "../src/execute.js";
import { buildExecuteParams, toJsonSafe } from "../src/params.js";

const SESSION = "0a1b2c3d-1111-2222-3333-444455556666";

function ctx(overrides = {}) {
  return {
    runId: "run-7",
    agent: { id: "agent-7", companyId: "co-7", name: "Builder", adapterType: "claude_k8s", adapterConfig: {} },
    runtime: { sessionId: null, sessionParams: null, sessionDisplayId: null, taskKey: null },
    config: {},
    context: {},
    authToken: "tok-SECRET-123",
    onLog: async () => {},
    ...overrides,
  };
}

const wake = {
  reason: "issue_commented",
  issue: { id: "iss-1", identifier: "ENG-1", title: "Write hello.txt", status: "in_progress" },
  commentIds: ["c-1"],
  comments: [{ id: "c-1", body: "Please also add a README.", authorType: "user", authorId: "u-1", createdAt: "2026-11-25T07:00:00.000Z" }],
};

describe("buildExecuteParams", () => {
  it("renders the default agent prompt for a fresh session, with no resume variant", async () => {
    const p = await buildExecuteParams(ctx());
    assert.match(p.prompt.fresh, /^You are agent agent-7 \(Builder\)\. Continue your Paperclip work\./);
    assert.equal(p.prompt.resume, null);
    assert.equal(p.prompt.freshMetrics.promptChars, p.prompt.fresh.length);
    assert.equal(p.prompt.freshMetrics.heartbeatPromptChars, p.prompt.fresh.length);
    assert.deepEqual(Object.keys(p.prompt.freshMetrics).sort(), [
      "bootstrapPromptChars", "heartbeatPromptChars", "promptChars", "sessionHandoffChars", "taskContextChars", "wakePromptChars",
    ]);
  });

  it("puts the bootstrap prompt only in the fresh prompt and renders templates", async () => {
    const p = await buildExecuteParams(
      ctx({
        runtime: { sessionId: SESSION, sessionParams: null, sessionDisplayId: SESSION, taskKey: null },
        config: { promptTemplate: "Heartbeat {{ run.id }} for {{agent.name}} in {{company.id}}", bootstrapPromptTemplate: "Boot {{ agentId }}  " },
      }),
    );
    assert.equal(p.prompt.fresh, "Boot agent-7\n\nHeartbeat run-7 for Builder in co-7");
    assert.equal(p.prompt.resume, "Heartbeat run-7 for Builder in co-7");
    assert.equal(p.prompt.freshMetrics.bootstrapPromptChars, "Boot agent-7".length);
    assert.equal(p.prompt.resumeMetrics.bootstrapPromptChars, 0);
    assert.equal(p.prompt.resumeMetrics.promptChars, p.prompt.resume.length);
  });

  it("uses the resume delta (wake prompt, no template) when resuming with a wake payload", async () => {
    const context = {
      paperclipWake: wake,
      paperclipTaskMarkdown: "## Task\n\nFull brief of ENG-1.",
      paperclipTaskMarkdownCompact: "## Task\n\nCompact brief.",
      paperclipSessionHandoffMarkdown: "  handoff note  ",
    };
    const p = await buildExecuteParams(
      ctx({ context, runtime: { sessionId: null, sessionParams: { sessionId: SESSION, cwd: "/w" }, sessionDisplayId: null, taskKey: "ENG-1" } }),
    );
    assert.match(p.prompt.fresh, /Paperclip Wake Payload/);
    assert.match(p.prompt.fresh, /Full brief of ENG-1\./);
    assert.match(p.prompt.fresh, /You are agent agent-7/);
    assert.ok(p.prompt.fresh.includes("\n\nhandoff note\n\n"));
    assert.match(p.prompt.resume, /Paperclip Resume Delta/);
    assert.match(p.prompt.resume, /Compact brief\./);
    assert.doesNotMatch(p.prompt.resume, /You are agent agent-7/);
    assert.equal(p.prompt.resumeMetrics.heartbeatPromptChars, 0);
    assert.equal(p.prompt.resumeMetrics.sessionHandoffChars, "handoff note".length);
    assert.equal(p.runtime.sessionParams.sessionId, SESSION);
  });

  it("uses the conversation template in conversation mode", async () => {
    const u = await import("@paperclipai/adapter-utils/server-utils");
    const p = await buildExecuteParams(ctx({ context: { conversationMode: true } }));
    assert.notEqual(u.DEFAULT_PAPERCLIP_CONVERSATION_PROMPT_TEMPLATE, u.DEFAULT_PAPERCLIP_AGENT_PROMPT_TEMPLATE);
    assert.equal(
      p.prompt.fresh,
      u.renderTemplate(u.DEFAULT_PAPERCLIP_CONVERSATION_PROMPT_TEMPLATE, {
        agentId: "agent-7", companyId: "co-7", runId: "run-7", company: { id: "co-7" },
        agent: ctx().agent, run: { id: "run-7", source: "on_demand" }, context: { conversationMode: true },
      }).trim(),
    );
  });

  it("builds claude_local's PAPERCLIP_* env, without PAPERCLIP_API_KEY", async () => {
    const saved = { ...process.env };
    process.env.PAPERCLIP_API_URL = "http://paperclip.paperclip.svc:3100";
    try {
      const p = await buildExecuteParams(
        ctx({
          config: { env: { PAPERCLIP_API_KEY: "from-config", FOO: "bar" } },
          context: {
            taskId: " task-1 ",
            wakeReason: "issue_commented",
            wakeCommentId: "c-1",
            approvalId: "ap-1",
            approvalStatus: "approved",
            issueIds: ["i-1", "", "i-2"],
            paperclipWake: wake,
            paperclipWorkspace: {
              cwd: "/paperclip/instances/default/workspaces/agent-7",
              source: "agent_home",
              strategy: "project_primary",
              workspaceId: "ws-1",
              agentHome: "/paperclip/instances/default/workspaces/agent-7",
            },
            paperclipWorkspaces: [{ cwd: "/paperclip/x" }],
            paperclipRuntimeServices: [{ id: "svc" }],
            paperclipRuntimePrimaryUrl: "http://svc",
          },
        }),
      );
      const env = p.paperclipEnv;
      assert.equal(env.PAPERCLIP_AGENT_ID, "agent-7");
      assert.equal(env.PAPERCLIP_COMPANY_ID, "co-7");
      assert.equal(env.PAPERCLIP_API_URL, "http://paperclip.paperclip.svc:3100");
      assert.equal(env.PAPERCLIP_RUN_ID, "run-7");
      assert.equal(env.PAPERCLIP_TASK_ID, "task-1");
      assert.equal(env.PAPERCLIP_WAKE_REASON, "issue_commented");
      assert.equal(env.PAPERCLIP_WAKE_COMMENT_ID, "c-1");
      assert.equal(env.PAPERCLIP_APPROVAL_ID, "ap-1");
      assert.equal(env.PAPERCLIP_APPROVAL_STATUS, "approved");
      assert.equal(env.PAPERCLIP_LINKED_ISSUE_IDS, "i-1,i-2");
      assert.equal(JSON.parse(env.PAPERCLIP_WAKE_PAYLOAD_JSON).reason, "issue_commented");
      assert.equal(env.PAPERCLIP_WORKSPACE_CWD, "/paperclip/instances/default/workspaces/agent-7");
      assert.equal(env.PAPERCLIP_WORKSPACE_SOURCE, "agent_home");
      assert.equal(env.PAPERCLIP_WORKSPACE_ID, "ws-1");
      assert.equal(env.AGENT_HOME, "/paperclip/instances/default/workspaces/agent-7");
      assert.deepEqual(JSON.parse(env.PAPERCLIP_WORKSPACES_JSON), [{ cwd: "/paperclip/x" }]);
      assert.deepEqual(JSON.parse(env.PAPERCLIP_RUNTIME_SERVICES_JSON), [{ id: "svc" }]);
      assert.equal(env.PAPERCLIP_RUNTIME_PRIMARY_URL, "http://svc");
      assert.equal(env.PAPERCLIP_API_KEY, undefined);
      assert.equal(env.FOO, undefined, "config.env is layered by the child, not here");
      assert.deepEqual(p.serverEnv, { PAPERCLIP_API_URL: "http://paperclip.paperclip.svc:3100" });
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
  });

  it("lets a configured cwd replace the agent-home workspace, as claude_local does", async () => {
    const p = await buildExecuteParams(
      ctx({ config: { cwd: "/paperclip/projects/p" }, context: { paperclipWorkspace: { cwd: "/paperclip/home", source: "agent_home" } } }),
    );
    assert.equal(p.paperclipEnv.PAPERCLIP_WORKSPACE_CWD, undefined);
    assert.equal(p.paperclipEnv.PAPERCLIP_WORKSPACE_SOURCE, "agent_home");
  });

  it("passes the runtime MCP servers, the token, and JSON-safe config/context", async () => {
    const servers = [{ name: "Paperclip projects", url: "http://127.0.0.1:3100/api/mcp/project-tools", token: "mcp-tok", connectionId: "c1" }];
    const cyclic = { a: 1 };
    cyclic.self = cyclic;
    const p = await buildExecuteParams(
      ctx({
        runtimeMcp: { getServers: () => servers },
        config: { n: 1n, fn: () => {}, nested: { ok: true } },
        context: { cyclic, shared: [cyclic, cyclic] },
      }),
    );
    assert.deepEqual(p.runtimeMcpServers, servers);
    assert.equal(p.authToken, "tok-SECRET-123");
    assert.deepEqual(p.config, { n: "1", nested: { ok: true } });
    assert.deepEqual(p.context, { cyclic: { a: 1 }, shared: [{ a: 1 }, { a: 1 }] });
    assert.deepEqual(p.runtime, { sessionId: null, sessionParams: null, sessionDisplayId: null, taskKey: null });
    assert.deepEqual((await buildExecuteParams(ctx({ runtimeMcp: undefined }))).runtimeMcpServers, []);
  });

  it("never writes the token to the console", async () => {
    const seen = [];
    const originals = {};
    for (const level of ["log", "info", "warn", "error", "debug"]) {
      originals[level] = console[level];
      console[level] = (...args) => seen.push(args.map(String).join(" "));
    }
    try {
      const failingService = {
        start: async () => {
          throw Object.assign(new Error("no binary"), { code: "claude_k8s_binary_unavailable" });
        },
      };
      const result = await execute(ctx(), failingService);
      assert.equal(result.errorCode, "claude_k8s_binary_unavailable");
      assert.ok(!JSON.stringify(result).includes("tok-SECRET-123"));
    } finally {
      Object.assign(console, originals);
    }
    assert.ok(!seen.some((line) => line.includes("tok-SECRET-123")), seen.join("\n"));
  });

  it("calls onCancellationReady, then onDispatch, then starts the request", async () => {
    const order = [];
    const service = {
      start: async (type) => {
        order.push(`start:${type}`);
        return { id: "1", result: Promise.resolve({ exitCode: 0, signal: null, timedOut: false }), cancel: () => false };
      },
    };
    const result = await execute(
      ctx({
        onCancellationReady: async () => {
          await new Promise((r) => setTimeout(r, 20));
          order.push("cancellationReady");
        },
        onDispatch: () => order.push("dispatch"),
      }),
      service,
    );
    assert.equal(result.exitCode, 0);
    assert.deepEqual(order, ["cancellationReady", "dispatch", "start:execute"]);
  });
});

describe("toJsonSafe", () => {
  it("keeps JSON values and drops what JSON cannot hold", () => {
    assert.equal(toJsonSafe(undefined), undefined);
    assert.deepEqual(toJsonSafe({ a: [1, "x", null, true], d: new Date(0), u: undefined }), {
      a: [1, "x", null, true],
      d: "1970-01-01T00:00:00.000Z",
    });
  });
});
