// Issue 7 end to end: a claude_k8s agent in a real Paperclip 2026.916.1 is as capable as a claude_local one.
// Paperclip lists the instructions-bundle and skills capabilities; the instructions written through Paperclip's
// instructions editor API and the `paperclip` skill reach the real claude in the Job (the fake Messages API records
// the system prompt); Paperclip's MCP tools are offered; a Bash tool call in the pod reads the run's own agent from
// Paperclip's API with PAPERCLIP_API_URL and PAPERCLIP_API_KEY; the run token is absent from the Job object, the
// run log and the pod's environment; changing the instructions between two heartbeats starts a fresh session and
// the run log says why.
//
// Needs the stage (make cluster-up), the packed adapter (make package) and the server started by
// test/stage/paperclip.sh with the stage's CLAUDE_K8S_SELF_POD and KUBECONFIG (make test-paperclip does all).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  PACKAGE,
  TARBALL,
  TYPE,
  agentConfig,
  api,
  createAgent,
  createCompany,
  followRun,
  invokeHeartbeat,
  leftovers,
  stageFacts,
  startFakeApi,
  version,
} from "./lib/stage.mjs";

const CACHE = process.env.CLAUDE_K8S_STAGE_CACHE ?? "/var/cache/claude-k8s-stage";
const SKILL_MD = path.join(CACHE, "paperclip/app/node_modules/@paperclipai/server/skills/paperclip/SKILL.md");

/** Installs this checkout's tarball even when another build of the same version is loaded. */
async function installThisBuild() {
  if (!fs.existsSync(TARBALL)) throw new Error(`${TARBALL} is missing: make package`);
  const info = await api("GET", `/adapters/${TYPE}`);
  if (info.status === 200 && info.json?.source === "external") {
    await api("DELETE", `/adapters/${TYPE}`, undefined, { expect: 200 });
  }
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-capabilities-"));
  fs.chmodSync(scratch, 0o755);
  const tgz = path.join(scratch, path.basename(TARBALL));
  fs.copyFileSync(TARBALL, tgz);
  fs.chmodSync(tgz, 0o644);
  await api("POST", "/adapters/install", { packageName: PACKAGE, version: `file:${tgz}` }, { expect: 201 });
  await api("POST", `/adapters/${TYPE}/reload`, undefined, { expect: 200 });
}

function kubectl(facts, args) {
  return new Promise((resolve, reject) =>
    execFile(facts.KUBECTL, ["--kubeconfig", facts.KUBECONFIG_ADMIN, "-n", "paperclip", ...args], { maxBuffer: 1 << 24 }, (err, out, errOut) =>
      err ? reject(new Error(errOut || err.message)) : resolve(out),
    ),
  );
}

/**
 * Assigns a new issue to the agent and returns the run Paperclip starts for it. Paperclip offers its MCP servers
 * ("Paperclip projects", "Paperclip connections") to task-bound runs only: its runtime-tools endpoint answers 422
 * to an agent-level heartbeat.
 */
async function issueRun(companyId, agentId) {
  const issue = await api("POST", `/companies/${companyId}/issues`, { title: "Check your capabilities", description: "Run the check.", assigneeAgentId: agentId, status: "todo" }, { expect: 201 });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const runs = (await api("GET", `/companies/${companyId}/heartbeat-runs?agentId=${agentId}`, undefined, { expect: 200 })).json;
    const run = runs.find((r) => r.invocationSource === "assignment");
    if (run) return run.id;
    if (Date.now() > deadline) throw new Error(`no run for issue ${issue.json.id} within 60 s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Runs a heartbeat (or the run `start` returns); meanwhile captures the agent's Job object as the API server holds it. */
async function heartbeatCapturingJob(facts, agentId, start = () => invokeHeartbeat(agentId)) {
  const runId = await start();
  let job = null;
  let done = false;
  const capture = (async () => {
    while (!done && !job) {
      const out = await kubectl(facts, ["get", "jobs", "-l", `paperclip.io/agent-id=${agentId}`, "-o", "json"]).catch(() => "{}");
      const items = JSON.parse(out).items ?? [];
      if (items.length > 0) job = items[0];
      else await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const records = [];
  const run = await followRun(runId, { onLogRecord: (r) => records.push(r) });
  done = true;
  await capture;
  return { runId, run, job, log: records.map((r) => r.chunk).join("") };
}

async function putInstructions(agentId, content) {
  const res = await api("PUT", `/agents/${agentId}/instructions-bundle/file`, { path: "AGENTS.md", content });
  assert.equal(res.status, 200, `PUT instructions answered ${res.status}: ${res.text}`);
  const agent = (await api("GET", `/agents/${agentId}`, undefined, { expect: 200 })).json;
  const file = agent.adapterConfig?.instructionsFilePath;
  assert.ok(typeof file === "string" && file.endsWith("AGENTS.md"), `instructionsFilePath: ${JSON.stringify(agent.adapterConfig)}`);
  return file;
}

describe("a claude_k8s agent has claude_local's capabilities in a real Paperclip", { concurrency: false }, () => {
  let facts;
  let fake;
  let company;
  let agent;
  let workspace;

  before(async () => {
    facts = stageFacts();
    fake = await startFakeApi();
    await installThisBuild();
    company = await createCompany(`claude-k8s e2e capabilities ${Date.now()}`);
    // The Bash call leaves the secrets it can see in files on the shared volume (the test reads them from the
    // host) and prints only harmless facts, so the transcript itself never holds a token.
    const bash =
      'wget -qO- --header "Authorization: Bearer $PAPERCLIP_API_KEY" "$PAPERCLIP_API_URL/api/agents/me"; echo; ' +
      'printf %s "$PAPERCLIP_API_KEY" > .e2e-run-key; ' +
      "cp /var/run/claude-k8s/run/mcp-config.json .e2e-mcp-config.json 2>/dev/null; " +
      "stat -L -c 'mcp-file %a %u %g' /var/run/claude-k8s/run/mcp-config.json; " +
      "env > .e2e-env-dump";
    agent = await createAgent(
      company.id,
      "K8s capabilities agent",
      agentConfig(facts, fake.url, {
        paperclipApiUrl: "http://127.0.0.1:3100",
        promptTemplate: `Heartbeat {{run.id}}. [[fake:bash ${bash}]] [[fake:text Capabilities {{run.id}} done]]`,
      }),
    );
    workspace = path.join("/paperclip/instances/default/workspaces", agent.id);
  });

  after(async () => {
    fake?.stop();
    if (agent) await api("POST", `/agents/${agent.id}/pause`, {}).catch(() => {});
    for (const f of [".e2e-run-key", ".e2e-mcp-config.json", ".e2e-env-dump"]) {
      if (workspace) fs.rmSync(path.join(workspace, f), { force: true });
    }
  });

  it("GET /api/adapters shows the instructions-bundle and skills capabilities", async () => {
    const list = (await api("GET", "/adapters", undefined, { expect: 200 })).json;
    const entry = list.find((a) => a.type === TYPE);
    assert.ok(entry, `claude_k8s listed: ${JSON.stringify(list.map((a) => a.type))}`);
    assert.equal(entry.version, version);
    assert.equal(entry.capabilities.supportsInstructionsBundle, true, JSON.stringify(entry.capabilities));
    assert.equal(entry.capabilities.supportsSkills, true);
    const skills = (await api("GET", `/agents/${agent.id}/skills`, undefined, { expect: 200 })).json;
    assert.equal(skills.adapterType, TYPE);
    assert.equal(skills.mode, "ephemeral");
    const paperclip = skills.entries.find((e) => e.runtimeName === "paperclip");
    assert.ok(paperclip, JSON.stringify(skills.entries.map((e) => e.key)));
    assert.equal(paperclip.desired, true, "the operational skill is mounted, as with claude_local");
  });

  it("instructions, the paperclip skill and Paperclip's tools reach claude; the token stays out of the Job, log and env", async () => {
    await putInstructions(agent.id, "# Capabilities agent\n\nE2E-INSTRUCTIONS-ALPHA: keep answers short.\n");
    const before = (await fake.requests()).length;
    const first = await heartbeatCapturingJob(facts, agent.id, () => issueRun(company.id, agent.id));
    const { run, job, log } = first;
    assert.equal(run.status, "succeeded", `run ${first.runId}: ${run.error ?? ""}\n${log}`);
    const requests = (await fake.requests()).slice(before).filter((r) => r.path === "/v1/messages");
    assert.ok(requests.length > 0, "claude called the fake API");
    const body = JSON.stringify(requests[0].body);
    const system = JSON.stringify(requests[0].body.system ?? "");
    assert.match(system, /E2E-INSTRUCTIONS-ALPHA/, "the instructions are in the system prompt");
    assert.match(system, /The above agent instructions were loaded from \/paperclip\//, "with claude_local's path directive");
    assert.match(system, /Company skill library/, "and the skill-library manifest");
    const skillLine = fs.readFileSync(SKILL_MD, "utf8").match(/Interact with the Paperclip control plane API/)[0];
    assert.ok(body.includes(skillLine), "the paperclip skill is listed to the model");
    const allBodies = JSON.stringify((await fake.requests()).slice(before).map((r) => r.body));
    assert.match(allBodies, /mcp__Paperclip_projects__/, "Paperclip's project MCP tools are offered");
    assert.match(allBodies, /mcp__Paperclip_connections__/, "Paperclip's connection MCP tools are offered");
    // The Bash tool: Paperclip's API answered the run's own agent.
    assert.ok(allBodies.includes(agent.id) && allBodies.includes("K8s capabilities agent"), "GET /api/agents/me answered");
    assert.match(allBodies, /mcp-file 440 0 1000/, "the MCP config is read-only, root's, readable by the agent's group");

    const key = fs.readFileSync(path.join(workspace, ".e2e-run-key"), "utf8");
    assert.ok(key.length > 20, "the pod had PAPERCLIP_API_KEY");
    const mcp = JSON.parse(fs.readFileSync(path.join(workspace, ".e2e-mcp-config.json"), "utf8"));
    const mcpTokens = Object.values(mcp.mcpServers).map((s) => s.headers.Authorization.replace(/^Bearer /, ""));
    assert.ok(mcpTokens.length > 0 && mcpTokens.every((t) => t.length > 20), JSON.stringify(Object.keys(mcp.mcpServers)));
    const env = fs.readFileSync(path.join(workspace, ".e2e-env-dump"), "utf8");
    assert.ok(job, "the Job was captured while it ran");
    const jobText = JSON.stringify(job);
    const runLog = (await api("GET", `/heartbeat-runs/${first.runId}/log?offset=0&limitBytes=8388608`, undefined, { expect: 200 })).text;
    for (const token of [key, ...mcpTokens]) {
      assert.ok(!jobText.includes(token), "no token in the Job object");
      assert.ok(!runLog.includes(token) && !log.includes(token), "no token in the run log");
    }
    for (const token of mcpTokens.filter((t) => t !== key)) {
      assert.ok(!env.includes(token), "no MCP token in the pod's environment");
    }
    assert.match(env, /^PAPERCLIP_API_URL=http:\/\/127\.0\.0\.1:3100$/m);
    assert.deepEqual(await leftovers(facts, agent.id), []);
  });

  it("the next heartbeat resumes; changed instructions start a fresh session and the log says why", async () => {
    // Agent-level heartbeats (Paperclip hands back only the bare session id), of an agent of its own: the first
    // agent's issue may still get follow-up wakes from Paperclip, which would supersede a manual heartbeat.
    const agent = await createAgent(
      company.id,
      "K8s resume agent",
      agentConfig(facts, fake.url, { promptTemplate: "Heartbeat {{run.id}}. [[fake:text Resume check {{run.id}} done]]" }),
    );
    await putInstructions(agent.id, "# Resume agent\n\nE2E-INSTRUCTIONS-ALPHA: keep answers short.\n");
    const first = await heartbeatCapturingJob(facts, agent.id);
    assert.equal(first.run.status, "succeeded", first.log);
    const session = first.run.sessionIdAfter;
    const second = await heartbeatCapturingJob(facts, agent.id);
    assert.equal(second.run.status, "succeeded", second.log);
    assert.equal(second.run.sessionIdAfter, session, `unchanged instructions: resumed\n${second.log}`);
    assert.doesNotMatch(second.log, /was saved for prompt bundle/);

    await putInstructions(agent.id, "# Resume agent\n\nE2E-INSTRUCTIONS-BETA: new rules.\n");
    const before = (await fake.requests()).length;
    const third = await heartbeatCapturingJob(facts, agent.id);
    assert.equal(third.run.status, "succeeded", third.log);
    assert.match(third.log, /session `[0-9a-f-]{36}` was saved for prompt bundle [0-9a-f]{64} and will not be resumed/);
    assert.notEqual(third.run.sessionIdAfter, session, "a fresh session");
    const system = JSON.stringify((await fake.requests()).slice(before).find((r) => r.path === "/v1/messages").body.system);
    assert.match(system, /E2E-INSTRUCTIONS-BETA/);
    assert.doesNotMatch(system, /E2E-INSTRUCTIONS-ALPHA/);
    assert.deepEqual(await leftovers(facts, agent.id), []);
    await api("POST", `/agents/${agent.id}/pause`, {}).catch(() => {});
  });
});
