// Shared by the Paperclip end-to-end tests and `make demo`: a real Paperclip (test/stage/paperclip.sh), the real
// stage (target/testcluster/stage.env), the project's fake Messages API, and the packed adapter.
//
// The client side here polls Paperclip's REST API for the run's state and log, as a person watching the UI would;
// the adapter itself never polls the cluster.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = process.env.REPO_ROOT ?? path.resolve(here, "../../../..");
export const BASE = (process.env.PAPERCLIP_URL ?? "http://127.0.0.1:3100").replace(/\/$/, "");
export const TYPE = "claude_k8s";
export const PACKAGE = "paperclip-adapter-claude-k8s";

export const version = fs
  .readFileSync(path.join(REPO, "Cargo.toml"), "utf8")
  .match(/\[workspace\.package\][^[]*?\nversion\s*=\s*"([^"]+)"/)[1];
export const TARBALL = path.join(REPO, "target", "npm", `${PACKAGE}-${version}.tgz`);

/** The running stage's facts, or an error that says how to get them. */
export function stageFacts() {
  const file = path.join(REPO, "target", "testcluster", "stage.env");
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: bring the stage up first (make cluster-up)`);
  const facts = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = line.match(/^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/);
    if (m) facts[m[1]] = m[2].replace(/^["']|["']$/g, "");
  }
  return facts;
}

export function serverLogTail(lines = 40) {
  const log = process.env.PAPERCLIP_SERVER_LOG;
  if (!log || !fs.existsSync(log)) return "(no server log)";
  // eslint-disable-next-line no-control-regex
  return fs.readFileSync(log, "utf8").replace(/\x1b\[[0-9;]*m/g, "").split("\n").slice(-lines).join("\n");
}

/** One Paperclip API call with a bound; a failure carries the response and the server log tail. */
export async function api(method, route, body, { expect, timeoutMs = 150_000 } = {}) {
  let response;
  try {
    response = await fetch(`${BASE}/api${route}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new Error(`${method} ${route} failed: ${err.message}\n--- server log ---\n${serverLogTail()}`);
  }
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (expect !== undefined && response.status !== expect) {
    throw new Error(
      `${method} ${route} answered ${response.status}, expected ${expect}: ${text.slice(0, 2000)}\n` +
        `--- server log ---\n${serverLogTail()}`,
    );
  }
  return { status: response.status, json, text, headers: response.headers };
}

/**
 * The fake Messages API binary on 127.0.0.1 (pods reach it through host networking), on a free port unless
 * `listen` names one.
 */
export async function startFakeApi(listen = "127.0.0.1:0") {
  const bin = path.join(REPO, "target", "debug", "fake-anthropic");
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p fake-anthropic`);
  const child = spawn(bin, ["--listen", listen], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("fake-anthropic did not print its URL within 10 s")), 10_000);
    readline.createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      resolve(line.trim());
    });
    child.once("exit", (code) => reject(new Error(`fake-anthropic exited with ${code}`)));
  });
  return {
    url,
    async requests() {
      const res = await fetch(`${url}/_fake/requests?path=/v1/messages`);
      return res.json();
    },
    /** From now on every model stream stops after its first block, until `release()`. */
    hold: () => fetch(`${url}/_fake/hold`, { method: "POST" }),
    /** Lifts `hold()` and lets every held stream (also `[[fake:hold]]` ones) go on. */
    release: () => fetch(`${url}/_fake/release`, { method: "POST" }),
    /** `{ok, requests, held_streams, held}`. */
    health: async () => (await fetch(`${url}/_fake/health`)).json(),
    stop() {
      child.kill("SIGTERM");
    },
  };
}

/**
 * Whether Paperclip's installed copy of the adapter (in its data dir) is this very tarball, file by file. The
 * version alone does not tell: every branch and build packs the same version, and /paperclip outlives them.
 */
function installedIsTarball() {
  const installed = path.join(process.env.PAPERCLIP_DATA_DIR ?? "/paperclip", "adapter-plugins", "node_modules", PACKAGE);
  if (!fs.existsSync(installed)) return false;
  const unpacked = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-tarball-"));
  try {
    execFileSync("tar", ["-xzf", TARBALL, "-C", unpacked]);
    const root = path.join(unpacked, "package");
    return fs
      .readdirSync(root, { recursive: true })
      .filter((f) => fs.statSync(path.join(root, f)).isFile())
      .every((f) => {
        const there = path.join(installed, f);
        return fs.existsSync(there) && fs.readFileSync(there).equals(fs.readFileSync(path.join(root, f)));
      });
  } finally {
    fs.rmSync(unpacked, { recursive: true, force: true });
  }
}

/** Installs the packed adapter (npm alias spec of the tarball) unless this tarball is already installed and loaded. */
export async function installAdapter() {
  if (!fs.existsSync(TARBALL)) throw new Error(`${TARBALL} is missing: make package`);
  const info = await api("GET", `/adapters/${TYPE}`);
  const external = info.status === 200 && info.json?.source === "external";
  if (external && info.json?.loaded && info.json?.version === version && installedIsTarball()) {
    return info.json;
  }
  if (external) {
    await api("DELETE", `/adapters/${TYPE}`, undefined, { expect: 200 });
  }
  // The server runs as UID 1000 and npm-installs from this path: give it a world-readable copy.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-heartbeat-"));
  fs.chmodSync(scratch, 0o755);
  const tgz = path.join(scratch, path.basename(TARBALL));
  fs.copyFileSync(TARBALL, tgz);
  fs.chmodSync(tgz, 0o644);
  const res = await api("POST", "/adapters/install", { packageName: PACKAGE, version: `file:${tgz}` }, { expect: 201 });
  await api("POST", `/adapters/${TYPE}/reload`, undefined, { expect: 200 });
  return res.json;
}

/** The agent config for this stage: local images, host network (fake API and Paperclip on 127.0.0.1). */
export function agentConfig(facts, fakeUrl, extra = {}) {
  return {
    image: facts.AGENT_IMAGE,
    initImage: facts.BUSYBOX_IMAGE,
    kubeconfig: facts.KUBECONFIG_LIMITED,
    "resources.requests.cpu": "100m",
    "resources.requests.memory": "128Mi",
    "resources.limits.memory": "2Gi",
    podSpecPatch: JSON.stringify({ hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet" }),
    timeoutSec: 300,
    env: {
      ANTHROPIC_BASE_URL: fakeUrl,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      CLAUDE_CODE_MAX_RETRIES: "1",
    },
    ...extra,
  };
}

export async function createCompany(name) {
  return (await api("POST", "/companies", { name }, { expect: 201 })).json;
}

/**
 * Creates an agent. Paperclip refuses `promptTemplate`/`bootstrapPromptTemplate` when a new agent's adapter
 * supports the instructions bundle (it gives the agent a managed AGENTS.md instead), as it does for claude_local; the
 * tests steer the fake API through the prompt, so those fields are set with a PATCH right after creation.
 */
export async function createAgent(companyId, name, adapterConfig) {
  const { promptTemplate, bootstrapPromptTemplate, ...rest } = adapterConfig;
  const res = await api(
    "POST",
    `/companies/${companyId}/agents`,
    { name, role: "engineer", adapterType: TYPE, adapterConfig: rest },
    { expect: 201 },
  );
  const templates = Object.fromEntries(
    Object.entries({ promptTemplate, bootstrapPromptTemplate }).filter(([, v]) => v !== undefined),
  );
  if (Object.keys(templates).length === 0) return res.json;
  return (await api("PATCH", `/agents/${res.json.id}`, { adapterConfig: templates }, { expect: 200 })).json;
}

/** Invokes a heartbeat and returns the run id. */
export async function invokeHeartbeat(agentId) {
  const res = await api("POST", `/agents/${agentId}/heartbeat/invoke`, {});
  if (res.status !== 202 && res.status !== 200 && res.status !== 201) {
    throw new Error(`heartbeat invoke answered ${res.status}: ${res.text}`);
  }
  return res.json.id;
}

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

/**
 * Follows a run until it ends: calls `onLogRecord` for each new log record (`{ts, stream, chunk}`) and
 * `onStatus` when the status changes. Returns the final run.
 */
export async function followRun(runId, { onLogRecord = () => {}, onStatus = () => {}, timeoutMs = 300_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let offset = 0;
  let status = null;
  for (;;) {
    const log = await api("GET", `/heartbeat-runs/${runId}/log?offset=${offset}&limitBytes=1048576`);
    if (log.status === 200 && log.json?.content) {
      const content = log.json.content;
      const complete = content.lastIndexOf("\n") + 1;
      for (const line of content.slice(0, complete).split("\n").filter(Boolean)) {
        try {
          onLogRecord(JSON.parse(line));
        } catch {
          // a partial NDJSON record: read again from its start next time
        }
      }
      offset += Buffer.byteLength(content.slice(0, complete));
    }
    const run = (await api("GET", `/heartbeat-runs/${runId}`, undefined, { expect: 200 })).json;
    if (run.status !== status) {
      status = run.status;
      onStatus(status, run);
    }
    if (TERMINAL.has(run.status)) {
      // One more read so the log's tail is included.
      const rest = await api("GET", `/heartbeat-runs/${runId}/log?offset=${offset}&limitBytes=1048576`);
      for (const line of (rest.json?.content ?? "").split("\n").filter(Boolean)) {
        try {
          onLogRecord(JSON.parse(line));
        } catch {
          // ignore a torn record at the very end
        }
      }
      return run;
    }
    if (Date.now() > deadline) throw new Error(`run ${runId} still ${run.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * The agent's Jobs, pods and Leases still in the cluster, once they are gone or 60 s passed: a normal run's result
 * goes out before its pods are gone (the adapter finishes the cleanup right after), so this waits for it.
 */
export async function leftovers(facts, agentId) {
  const list = () => kubectl(facts, ["get", "jobs,pods,leases", "-l", `paperclip.io/agent-id=${agentId}`, "-o", "name"]);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const left = (await list()).split("\n").filter(Boolean);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Calls `fn` every 250 ms until it returns something truthy (returned), or fails naming `what` after the time. */
export async function until(what, fn, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

/** The stage's kubectl as admin in namespace paperclip; stdout. */
export async function kubectl(facts, args) {
  const { execFile } = await import("node:child_process");
  return new Promise((resolve, reject) =>
    execFile(
      facts.KUBECTL,
      ["--kubeconfig", facts.KUBECONFIG_ADMIN, "-n", "paperclip", ...args],
      { maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`kubectl ${args.join(" ")}: ${stderr || err.message}`)) : resolve(stdout)),
    ),
  );
}

/** `kubectl get ... -o json`, parsed. */
export const kubectlJson = async (facts, args) => JSON.parse(await kubectl(facts, [...args, "-o", "json"]));
