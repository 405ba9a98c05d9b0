#!/usr/bin/env node
// Records the corpus files that need a cluster (execute-success.jsonl, execute-cancel.jsonl): the real shim
// (npm/src) runs two heartbeats on the stage through the real `claude-k8s serve` (the real claude against the fake
// Messages API), and every line between them is written down as it passed. Run it under the stage lock:
//
//   cargo build -p claude-k8s -p fake-anthropic
//   flock /tmp/claude-k8s-stage.lock test/stage/cluster.sh up
//   flock /tmp/claude-k8s-stage.lock node test/protocol/record.mjs
//
// `node record.mjs proxy <log>` is the recording proxy itself: the service spawns it in place of the binary.

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const BINARY = path.join(ROOT, "target/debug/claude-k8s");

if (process.argv[2] === "proxy") {
  // stdin -> serve and serve's stdout -> stdout, line by line, each line logged with its direction.
  const log = fs.openSync(process.argv[3], "a");
  const note = (entry) => fs.writeSync(log, `${JSON.stringify(entry)}\n`);
  const serve = spawn(BINARY, ["serve"], { stdio: ["pipe", "pipe", "inherit"] });
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    note({ send: JSON.parse(line) });
    serve.stdin.write(`${line}\n`);
  }).on("close", () => serve.stdin.end());
  readline.createInterface({ input: serve.stdout }).on("line", (line) => {
    note({ recv: JSON.parse(line) });
    process.stdout.write(`${line}\n`);
  });
  serve.on("exit", (code) => process.exit(code ?? 1));
} else {
  await record();
}

async function record() {
  const stage = Object.fromEntries(
    fs.readFileSync(path.join(ROOT, "target/testcluster/stage.env"), "utf8").split("\n")
      .map((l) => l.match(/^([A-Z_]+)=(.*)$/)).filter(Boolean).map(([, k, v]) => [k, v.replace(/^"|"$/g, "")]),
  );
  const fake = spawn(path.join(ROOT, "target/debug/fake-anthropic"), [], { stdio: ["ignore", "pipe", "inherit"] });
  const fakeUrl = await new Promise((resolve) => readline.createInterface({ input: fake.stdout }).once("line", resolve));
  const { createService } = await import(path.join(ROOT, "npm/src/service.js"));
  const { execute } = await import(path.join(ROOT, "npm/src/execute.js"));
  const log = path.join(ROOT, "target/protocol-recording.jsonl");
  fs.rmSync(log, { force: true });
  const service = createService({
    resolveBinary: () => ({ path: process.execPath, fromEnv: true }),
    args: [fileURLToPath(import.meta.url), "proxy", log],
    packageVersion: "recording",
    env: { ...process.env, CLAUDE_K8S_SELF_POD: stage.SELF_POD ?? "paperclip/paperclip", KUBECONFIG: stage.KUBECONFIG_LIMITED },
  });
  const agentConfig = (agent, promptTemplate) => {
    const cwd = `/paperclip/test-workspaces/${agent}`;
    fs.mkdirSync(cwd, { recursive: true });
    fs.chownSync("/paperclip/test-workspaces", 1000, 1000);
    fs.chownSync(cwd, 1000, 1000);
    return {
      kubeconfig: stage.KUBECONFIG_LIMITED, image: stage.AGENT_IMAGE, initImage: stage.BUSYBOX_IMAGE, cwd,
      "resources.requests.cpu": "100m", "resources.requests.memory": "128Mi", "resources.limits.memory": "2Gi",
      podSpecPatch: { hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet" }, paperclipApiUrl: "http://127.0.0.1:3100",
      env: { ANTHROPIC_BASE_URL: fakeUrl, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", CLAUDE_CODE_MAX_RETRIES: "1" },
      promptTemplate, timeoutSec: 300, graceSec: 5,
    };
  };
  const ctx = (runId, agent, promptTemplate, extra = {}) => ({
    runId, agent: { id: agent, companyId: "company-recorded", name: "Recorded agent" },
    runtime: { sessionId: null, sessionParams: null, sessionDisplayId: null, taskKey: null },
    config: agentConfig(agent, promptTemplate), context: {}, authToken: "run-token-recorded-0123456789",
    onLog: async () => {}, ...extra,
  });
  try {
    const ok = await execute(ctx("run-success", "recorded-success", "[[fake:bash echo recorded > hello.txt]]"), service);
    if (ok.exitCode !== 0) throw new Error(`the success run failed: ${JSON.stringify(ok)}`);
    const controller = new AbortController();
    const hang = ctx("run-hang", "recorded-hang", "[[fake:hold Working on it]]", {
      signal: controller.signal,
      onLog: async (_stream, chunk) => {
        if (chunk.includes('"type":"assistant"')) controller.abort(new Error("Cancelled by a board operator"));
      },
    });
    const cancelled = await execute(hang, service);
    if (cancelled.resultJson?.executionCancellation?.state !== "acknowledged") throw new Error(`not cancelled: ${JSON.stringify(cancelled)}`);
  } finally {
    await service.shutdown();
    fake.kill("SIGTERM");
  }
  const entries = fs.readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const hello = entries.find((e) => e.recv?.type === "hello");
  const write = (file, about, id) => {
    const lines = [{ corpus: path.basename(file, ".jsonl"), serve: "recorded", about }, hello, ...entries.filter((e) => (e.send ?? e.recv)?.id === id)];
    fs.writeFileSync(path.join(HERE, file), lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  };
  write("execute-success.jsonl", "A heartbeat on the stage, recorded by record.mjs: the real claude runs one Bash tool call; every log, meta and event line, then the result.", "1");
  write("execute-cancel.jsonl", "A heartbeat on the stage, recorded by record.mjs: claude hangs mid-answer, Paperclip cancels after its first assistant line; the Job is stopped and the result acknowledges the cancel.", "2");
}
