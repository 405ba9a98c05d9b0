// Prompt parity: the prompt the shim renders (npm/src/prompt.js) is byte for byte the prompt claude_local's CLI lane
// writes to Claude's stdin, for fresh and resumed sessions, and the shim's PAPERCLIP_* env is claude_local's.
//
// claude_local here is the real @paperclipai/adapter-claude-local 2026.916.1 of the stage's Paperclip install,
// run with engine "cli" against a recording stand-in for the `claude` command (it saves stdin, argv and env and
// prints a minimal stream-json result). The shim's renderer is given the same @paperclipai/adapter-utils copy.
// No server and no Kubernetes are needed. Run by `test/stage/paperclip.sh test` (Node 24).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = process.env.REPO_ROOT ?? path.resolve(here, "../../..");
const CACHE = process.env.CLAUDE_K8S_STAGE_CACHE ?? "/var/cache/claude-k8s-stage";
const MODULES = path.join(CACHE, "paperclip", "app", "node_modules");
const SESSION = "0a1b2c3d-1111-2222-3333-444455556666";

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-prompt-parity-"));
const out = path.join(scratch, "out");
const cwd = path.join(scratch, "cwd");
const fakeClaude = path.join(scratch, "fake-claude");
fs.mkdirSync(out);
fs.mkdirSync(cwd);
fs.writeFileSync(
  fakeClaude,
  `#!/bin/sh
# Recording stand-in for the claude CLI (this test only).
if [ "$1" = "--version" ]; then echo "2.1.328 (Claude Code)"; exit 0; fi
n=$(ls "$FAKE_CLAUDE_OUT" | wc -l)
cat > "$FAKE_CLAUDE_OUT/$n.stdin"
printf '%s\n' "$@" > "$FAKE_CLAUDE_OUT/$n.argv"
env > "$FAKE_CLAUDE_OUT/$n.env"
echo '{"type":"system","subtype":"init","session_id":"${SESSION}","model":"m"}'
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"${SESSION}","usage":{"input_tokens":1,"output_tokens":1}}'
`,
);
fs.chmodSync(fakeClaude, 0o755);

const saved = { PAPERCLIP_HOME: process.env.PAPERCLIP_HOME, HOME: process.env.HOME, FAKE_CLAUDE_OUT: process.env.FAKE_CLAUDE_OUT };
process.env.PAPERCLIP_HOME = path.join(scratch, "home");
process.env.HOME = path.join(scratch, "home");
process.env.FAKE_CLAUDE_OUT = out;

after(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  fs.rmSync(scratch, { recursive: true, force: true });
});

const issue = { id: "iss-1", identifier: "ENG-1", title: "Write hello.txt", status: "in_progress", priority: "medium" };
const commentWake = {
  reason: "issue_commented",
  issue,
  commentIds: ["c-1"],
  comments: [{ id: "c-1", body: "Please also add a README.", authorType: "user", authorId: "u-1", createdAt: "2026-11-25T07:00:00.000Z" }],
};
const taskContext = {
  taskId: "iss-1",
  issueId: "iss-1",
  wakeReason: "issue_commented",
  wakeCommentId: "c-1",
  paperclipTaskMarkdown: "## Task ENG-1\n\nWrite hello.txt with a greeting. Full brief.",
  paperclipTaskMarkdownCompact: "## Task ENG-1\n\nWrite hello.txt (compact).",
};
const custom = {
  promptTemplate: "Heartbeat {{ run.id }} for {{agent.name}} ({{ agentId }}) in {{company.id}}; wake {{context.wakeReason}}",
  bootstrapPromptTemplate: "Bootstrap for {{ agent.name }}: read AGENTS.md first.",
};
const fresh = { sessionId: null, sessionParams: null, sessionDisplayId: null, taskKey: null };
const resumed = { sessionId: null, sessionParams: { sessionId: SESSION, cwd }, sessionDisplayId: SESSION, taskKey: "iss-1" };

const cases = [
  { name: "fresh, default template", runtime: fresh, config: {}, context: {}, expect: [/^You are agent agent-7 \(Builder\)/] },
  {
    name: "fresh, custom and bootstrap templates",
    runtime: fresh,
    config: custom,
    context: {},
    expect: [/^Bootstrap for Builder: read AGENTS\.md first\.\n\nHeartbeat run-1 for Builder \(agent-7\) in co-7; wake$/],
  },
  {
    name: "resumed, no wake: template only, no bootstrap",
    runtime: resumed,
    config: custom,
    context: {},
    expect: [/^Heartbeat run-2 for Builder/],
    reject: [/Bootstrap/],
  },
  {
    name: "fresh task run with a comment wake, task brief and handoff",
    runtime: fresh,
    config: custom,
    context: { ...taskContext, paperclipWake: commentWake, paperclipSessionHandoffMarkdown: "## Handoff\n\nPrevious session notes." },
    expect: [/^Bootstrap for Builder/, /Paperclip Wake Payload/, /Previous session notes\./, /Full brief\./, /Heartbeat run-3/],
  },
  {
    name: "resumed task run with a comment wake (resume delta, compact brief)",
    runtime: resumed,
    config: custom,
    context: { ...taskContext, paperclipWake: commentWake, paperclipSessionHandoffMarkdown: "## Handoff\n\nPrevious session notes." },
    expect: [/Paperclip Resume Delta/, /\(compact\)/],
    reject: [/Bootstrap/, /Heartbeat run-4/, /Full brief/],
  },
  {
    name: "resumed assignment wake (full brief)",
    runtime: resumed,
    config: {},
    context: { ...taskContext, wakeReason: "issue_assigned", paperclipWake: { reason: "issue_assigned", issue } },
    expect: [/Full brief\./],
  },
  {
    name: "recovery wake (no template)",
    runtime: fresh,
    config: {},
    context: {
      ...taskContext,
      paperclipWake: { reason: "source_scoped_recovery_action", issue, recovery: { cause: "run_failed", failureSummary: "exit 1" } },
    },
    reject: [/You are agent agent-7/],
  },
  { name: "conversation mode", runtime: fresh, config: {}, context: { conversationMode: true } },
];

describe("prompt parity with claude_local's CLI lane", { concurrency: false }, () => {
  let claudeLocalExecute;
  let u;
  let renderPrompts;
  let buildRunEnv;

  before(async () => {
    const claudeLocal = path.join(MODULES, "@paperclipai", "adapter-claude-local");
    assert.ok(
      fs.existsSync(path.join(claudeLocal, "package.json")),
      `${claudeLocal} is missing: run 'test/stage/paperclip.sh install'`,
    );
    assert.equal(JSON.parse(fs.readFileSync(path.join(claudeLocal, "package.json"), "utf8")).version, "2026.916.1");
    ({ execute: claudeLocalExecute } = await import(pathToFileURL(path.join(claudeLocal, "dist", "server", "execute.js")).href));
    u = await import(pathToFileURL(path.join(MODULES, "@paperclipai", "adapter-utils", "dist", "server-utils.js")).href);
    ({ renderPrompts, buildRunEnv } = await import(pathToFileURL(path.join(REPO, "npm", "src", "prompt.js")).href));
  });

  for (const [index, c] of cases.entries()) {
    it(c.name, async () => {
      const agent = { id: "agent-7", companyId: "co-7", name: "Builder", adapterType: "claude_local", adapterConfig: {} };
      const ctx = {
        runId: `run-${index}`,
        agent,
        runtime: c.runtime,
        config: { ...c.config, engine: "cli", command: fakeClaude, cwd },
        context: c.context,
        authToken: "tok",
        onLog: async () => {},
      };
      const before = new Set(fs.readdirSync(out));
      const result = await claudeLocalExecute(ctx);
      assert.equal(result.exitCode, 0, JSON.stringify(result).slice(0, 1000));
      const written = fs.readdirSync(out).filter((f) => !before.has(f) && f.endsWith(".stdin"));
      assert.equal(written.length, 1, "claude_local ran claude once");
      const stdin = fs.readFileSync(path.join(out, written[0]), "utf8");

      const ours = renderPrompts({ runId: ctx.runId, agent, config: ctx.config, context: ctx.context, runtime: ctx.runtime }, u);
      const resumedRun = c.runtime.sessionParams?.sessionId !== undefined;
      const argv = fs.readFileSync(path.join(out, written[0].replace(/\.stdin$/, ".argv")), "utf8").split("\n");
      assert.equal(argv.includes("--resume"), resumedRun, `claude_local ${resumedRun ? "did not resume" : "resumed"}`);
      const expected = resumedRun ? (ours.resume ?? ours.fresh) : ours.fresh;
      assert.equal(stdin, expected);
      assert.ok(stdin.length > 0);
      if (c.expect) for (const re of c.expect) assert.match(stdin, re);
      if (c.reject) for (const re of c.reject) assert.doesNotMatch(stdin, re);

      // The run's PAPERCLIP_* variables: ours equal claude_local's, and claude_local sets none we miss.
      const theirs = Object.fromEntries(
        fs
          .readFileSync(path.join(out, written[0].replace(/\.stdin$/, ".env")), "utf8")
          .split("\n")
          .filter((l) => l.includes("="))
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
      const env = buildRunEnv({ runId: ctx.runId, agent, config: ctx.config, context: ctx.context }, u);
      for (const [key, value] of Object.entries(env)) {
        // (`env` output is line based: a multi-line value cannot be read back, only its presence.)
        if (value.includes("\n")) assert.ok(key in theirs, key);
        else assert.equal(theirs[key], value, key);
      }
      const runKeys = Object.keys(theirs).filter(
        (k) => (k.startsWith("PAPERCLIP_") || k === "AGENT_HOME") && !(k in process.env) && k !== "PAPERCLIP_API_KEY",
      );
      for (const key of runKeys) assert.ok(key in env, `claude_local sets ${key}, the shim does not`);
    });
  }
});
