// Issue 3 end to end: a real Paperclip 2026.916.1 with the packed adapter installed, an agent of type
// claude_k8s, heartbeats that run as Jobs on the real stage with the real Claude Code CLI against the project's
// fake Messages API. The run succeeds, its log holds the stream-json transcript, usage and cost are recorded, the
// session is kept, and the next heartbeat resumes it (the session lives on the shared volume).
//
// Needs the stage (make cluster-up) and the server started by test/stage/paperclip.sh with the stage's
// CLAUDE_K8S_SELF_POD in its environment.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  agentConfig,
  api,
  createAgent,
  createCompany,
  followRun,
  installAdapter,
  invokeHeartbeat,
  leftovers,
  stageFacts,
  startFakeApi,
} from "./lib/stage.mjs";

describe("a claude_k8s heartbeat in a real Paperclip", { concurrency: false }, () => {
  let facts;
  let fake;
  let company;
  let agent;
  let firstRun;

  before(async () => {
    facts = stageFacts();
    fake = await startFakeApi();
    await installAdapter();
    company = await createCompany(`claude-k8s e2e heartbeat ${Date.now()}`);
    agent = await createAgent(
      company.id,
      "K8s heartbeat agent",
      agentConfig(facts, fake.url, {
        promptTemplate: "You are agent {{agent.id}} ({{agent.name}}). [[fake:text Heartbeat {{run.id}} done]]",
      }),
    );
  });

  after(async () => {
    fake?.stop();
    if (agent) await api("POST", `/agents/${agent.id}/pause`, {}).catch(() => {});
  });

  it("runs as a Job, streams the transcript and records usage, cost and the session", async () => {
    const records = [];
    const runId = await invokeHeartbeat(agent.id);
    const run = await followRun(runId, { onLogRecord: (r) => records.push(r) });
    const stdout = records.filter((r) => r.stream === "stdout").map((r) => r.chunk).join("");
    assert.equal(run.status, "succeeded", `run ${runId}: ${run.error ?? ""}\n${stdout}`);
    const events = stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const init = events.find((e) => e.type === "system" && e.subtype === "init");
    assert.ok(init, "the log holds Claude's system/init line");
    const result = events.find((e) => e.type === "result");
    assert.ok(result && result.is_error === false, "the log holds Claude's result line");
    assert.match(stdout, /\[claude-k8s\] Job claude-/, "progress lines name the Job");
    assert.equal(run.sessionIdAfter, init.session_id);
    assert.ok(run.usageJson.inputTokens > 0, JSON.stringify(run.usageJson));
    assert.ok(run.usageJson.outputTokens > 0, JSON.stringify(run.usageJson));
    assert.ok(Math.abs(run.usageJson.costUsd - result.total_cost_usd) < 1e-9, JSON.stringify(run.usageJson));
    assert.equal(run.exitCode, 0);
    assert.deepEqual(await leftovers(facts, agent.id), [], "no Job or pod is left");
    firstRun = { run, init, result };
  });

  it("the next heartbeat resumes the session from the shared volume", async () => {
    assert.ok(firstRun, "needs the first heartbeat");
    const before = (await fake.requests()).length;
    const runId = await invokeHeartbeat(agent.id);
    const records = [];
    const run = await followRun(runId, { onLogRecord: (r) => records.push(r) });
    const stdout = records.map((r) => r.chunk).join("");
    assert.equal(run.status, "succeeded", `run ${runId}: ${run.error ?? ""}\n${stdout}`);
    assert.equal(run.sessionIdBefore, firstRun.init.session_id);
    assert.equal(run.sessionIdAfter, firstRun.init.session_id, "the same Claude session continued");
    const requests = (await fake.requests()).slice(before);
    const carried = requests.some((r) => JSON.stringify(r.body?.messages ?? []).includes(firstRun.result.result));
    assert.ok(carried, "the resumed request carried the earlier conversation");
    assert.deepEqual(await leftovers(facts, agent.id), []);
  });

  /**
   * Starts a heartbeat of the agent, waits until its run log shows `needle`, cancels it through Paperclip's own
   * endpoint, and checks the cancel is acknowledged (200, run cancelled) and nothing of it is left.
   */
  async function cancelOnceLogged(agentId, needle, leftMessage) {
    const runId = await invokeHeartbeat(agentId);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const log = await api("GET", `/heartbeat-runs/${runId}/log?offset=0&limitBytes=1048576`);
      if ((log.json?.content ?? "").includes(needle)) break;
      if (Date.now() > deadline) throw new Error(`run ${runId} never logged ${needle}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const cancel = await api("POST", `/heartbeat-runs/${runId}/cancel`, {});
    assert.equal(cancel.status, 200, `cancel answered ${cancel.status}: ${cancel.text}`);
    const run = await followRun(runId);
    assert.equal(run.status, "cancelled");
    assert.equal(run.resultJson?.executionCancellation?.state, "acknowledged", JSON.stringify(run.resultJson));
    assert.deepEqual(await leftovers(facts, agentId), [], leftMessage);
  }

  it("a cancel from Paperclip stops the Job and Paperclip's cancel endpoint answers 200", async () => {
    const held = await createAgent(
      company.id,
      "K8s cancel agent",
      agentConfig(facts, fake.url, { graceSec: 2, promptTemplate: "Hold on. [[fake:hold Working on it]]" }),
    );
    try {
      // Once claude is talking to the model (the stream is held), i.e. the pod runs.
      await cancelOnceLogged(held.id, '\\"subtype\\":\\"init\\"', "the Job and its pod are gone");
    } finally {
      await api("POST", `/agents/${held.id}/pause`, {}).catch(() => {});
    }
  });

  it("a cancel from Paperclip while the pod is still Pending is acknowledged, and nothing is left", async () => {
    const pending = await createAgent(
      company.id,
      "K8s pending cancel agent",
      agentConfig(facts, fake.url, { graceSec: 2, nodeSelector: { "example.com/no-such-node": "true" } }),
    );
    try {
      // Once the adapter reports the pod pending (the scheduler finds no node), i.e. it never started.
      await cancelOnceLogged(pending.id, "pending: Unschedulable", "the Job and its pending pod are gone");
    } finally {
      await api("POST", `/agents/${pending.id}/pause`, {}).catch(() => {});
    }
  });

  it("the agent's workspace is on the shared volume at the same absolute path", async () => {
    const workspace = path.join("/paperclip/instances/default/workspaces", agent.id);
    assert.ok(fs.existsSync(workspace), `${workspace} exists`);
    const sessions = path.join("/paperclip/.claude/projects");
    assert.ok(fs.existsSync(sessions), "Claude's session store is under HOME=/paperclip");
  });
});
