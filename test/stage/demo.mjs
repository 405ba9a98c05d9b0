// The narrated part of `make demo` (run by test/stage/demo.sh with Node 24): install the packed adapter into the
// running Paperclip, create an agent of type claude_k8s, invoke one heartbeat and show its transcript as the
// Paperclip UI renders it (through the adapter's own UI parser), then the result Paperclip recorded.
import fs from "node:fs";
import path from "node:path";

import {
  REPO,
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
} from "./paperclip/lib/stage.mjs";

const facts = stageFacts();
const parserSource = fs.readFileSync(path.join(REPO, "npm", "src", "ui-parser.cjs"), "utf8");
const parser = {};
new Function("exports", "module", "self", "globalThis", `"use strict";\n{\n${parserSource}\n}`)(parser, { exports: parser });

const dim = (s) => `\x1b[2m${s}\x1b[0m`;
function show(entry) {
  switch (entry.kind) {
    case "init":
      return console.log(dim(`  [init] session ${entry.sessionId} model ${entry.model}`));
    case "assistant":
      return console.log(`  [assistant] ${entry.text}`);
    case "thinking":
      return console.log(dim(`  [thinking] ${entry.text}`));
    case "tool_call":
      return console.log(`  [tool ${entry.name}] ${JSON.stringify(entry.input)}`);
    case "tool_result":
      return console.log(dim(`  [tool result] ${entry.content.trim().slice(0, 200)}`));
    case "result":
      return console.log(`  [result] ${entry.subtype}: ${entry.text} (${entry.inputTokens} in, ${entry.outputTokens} out, $${entry.costUsd})`);
    case "system":
      return console.log(dim(`  ${entry.text}`));
    default:
      return console.log(dim(`  ${entry.text ?? JSON.stringify(entry)}`));
  }
}

console.log(`stage: Kubernetes ${facts.K8S_VERSION} (${facts.TIER} tier), agent image ${facts.AGENT_IMAGE}`);
const fake = await startFakeApi();
console.log(`fake Anthropic Messages API: ${fake.url}`);
const installed = await installAdapter();
console.log(`adapter installed: ${installed.type} ${installed.version ?? ""}`);
const company = await createCompany(`claude-k8s demo ${new Date().toISOString()}`);
const agent = await createAgent(
  company.id,
  "Demo engineer",
  agentConfig(facts, fake.url, {
    promptTemplate:
      "You are agent {{agent.id}} ({{agent.name}}). Write the date into a file, then report. " +
      "[[fake:bash date > heartbeat.txt && cat heartbeat.txt]] [[fake:text I wrote heartbeat.txt in my workspace.]]",
  }),
);
console.log(`agent ${agent.id} (adapterType ${agent.adapterType}) in company ${company.name}`);

const runId = await invokeHeartbeat(agent.id);
console.log(`\nheartbeat ${runId}: live transcript`);
const run = await followRun(runId, {
  onStatus: (status) => console.log(dim(`  (run ${status})`)),
  onLogRecord: (record) => {
    for (const line of record.chunk.split("\n").filter(Boolean)) {
      if (record.stream === "stderr") console.log(dim(`  [stderr] ${line}`));
      else for (const entry of parser.parseStdoutLine(line, record.ts)) show(entry);
    }
  },
});

console.log(`\nrecorded by Paperclip:`);
console.log(`  status          ${run.status} (exit code ${run.exitCode})`);
console.log(`  session after   ${run.sessionIdAfter}`);
console.log(`  usage           ${JSON.stringify({ in: run.usageJson?.inputTokens, cached: run.usageJson?.cachedInputTokens, out: run.usageJson?.outputTokens })}`);
console.log(`  cost            $${run.usageJson?.costUsd}  (${run.usageJson?.biller}, ${run.usageJson?.billingType})`);
const file = path.join("/paperclip/instances/default/workspaces", agent.id, "heartbeat.txt");
console.log(`  workspace file  ${file}: ${fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : "(missing)"}`);
const left = await leftovers(facts, agent.id);
console.log(`  left in cluster ${left.length ? left.join(", ") : "nothing (Job and pod deleted)"}`);
await api("POST", `/agents/${agent.id}/pause`, {});
fake.stop();
if (run.status !== "succeeded") process.exit(1);
