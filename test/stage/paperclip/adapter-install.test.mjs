// End to end, no Kubernetes needed: `make package`'s tarball installed into a real Paperclip 2026.916.1
// (test/stage/paperclip.sh start), then the adapter as Paperclip serves it: listing, capabilities, UI parser,
// config schema, models, the environment check (the real claude-k8s binary, spawned by the server), reload,
// removal; the same from an unpacked local directory and through the `paperclipai adapter` CLI; and an upgrade in
// place over an earlier version the server has loaded (install + reload, no restart).
//
// Run by `test/stage/paperclip.sh test` (Node 24). Env: PAPERCLIP_URL, REPO_ROOT, PAPERCLIP_SERVER_LOG,
// PAPERCLIP_STAGE_BIN (the pinned node/npm/paperclipai), PAPERCLIP_DATA_DIR.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

import { BASE, PACKAGE, REPO, TARBALL, TYPE, api, serverLogTail, version } from "./lib/stage.mjs";

const run = promisify(execFile);
const EARLIER_VERSION = "0.0.1-earlier";
const STAGE_BIN = process.env.PAPERCLIP_STAGE_BIN;
const DATA_DIR = process.env.PAPERCLIP_DATA_DIR ?? "/paperclip";
const COMPANY_NAME = "claude-k8s e2e (adapter-install)";
const { CONFIG_KEYS } = await import(pathToFileURL(path.join(REPO, "npm", "src", "config-schema.js")).href);
const { ANTHROPIC_MODELS } = await import(pathToFileURL(path.join(REPO, "npm", "src", "models.js")).href);

/** Removes any claude_k8s registration left by an earlier (failed) run, so the suite is repeatable. */
async function removeAdapter() {
  const info = await api("GET", `/adapters/${TYPE}`);
  if (info.status === 200 && info.json?.source === "external") {
    await api("DELETE", `/adapters/${TYPE}`, undefined, { expect: 200 });
  }
}

async function company() {
  const list = await api("GET", "/companies", undefined, { expect: 200 });
  const found = list.json.find((c) => c.name === COMPANY_NAME);
  if (found) return found.id;
  return (await api("POST", "/companies", { name: COMPANY_NAME }, { expect: 201 })).json.id;
}

/** A world-readable copy (the server runs as UID 1000 and npm-installs from this path). */
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "claude-k8s-paperclip-e2e-"));
fs.chmodSync(scratch, 0o755);
const tgz = path.join(scratch, path.basename(TARBALL));

const stageEnv = { ...process.env, PATH: `${STAGE_BIN ? `${STAGE_BIN}:` : ""}${process.env.PATH}` };

function testEnvironment(companyId) {
  return api(
    "POST",
    `/companies/${companyId}/adapters/${TYPE}/test-environment`,
    { adapterConfig: {} },
    { expect: 200 },
  );
}

/**
 * An earlier version of the package, as a server that loaded it keeps it: its entry imports sibling modules named
 * like the shim's sources (npm/src/*.js), each with an export set of its own (none of the names the shim's
 * modules export), and its adapter offers no models. Node's ESM registry keeps those modules by URL for the
 * server's life; a package whose entry imported its siblings would get these on reload and fail to link (as
 * 8be5d58's did: "does not provide an export named 'modelsList'").
 */
function earlierTarball() {
  const root = path.join(scratch, "earlier");
  const src = path.join(root, "package", "src");
  fs.mkdirSync(src, { recursive: true });
  const siblings = fs
    .readdirSync(path.join(REPO, "npm", "src"))
    .filter((f) => f.endsWith(".js") && f !== "index.js")
    .sort();
  assert.ok(siblings.length > 0);
  for (const f of siblings) fs.writeFileSync(path.join(src, f), `export const earlierModule = ${JSON.stringify(f)};\n`);
  fs.writeFileSync(
    path.join(src, "index.js"),
    `${siblings.map((f) => `import "./${f}";`).join("\n")}
export function createServerAdapter() {
  return {
    type: ${JSON.stringify(TYPE)},
    models: [],
    execute: async () => ({ exitCode: 1, signal: null, timedOut: false, errorMessage: "the earlier version" }),
    testEnvironment: async () =>
      ({ adapterType: ${JSON.stringify(TYPE)}, status: "fail", checks: [], testedAt: new Date().toISOString() }),
  };
}
export default createServerAdapter;
`,
  );
  fs.writeFileSync(
    path.join(root, "package", "package.json"),
    JSON.stringify({ name: PACKAGE, version: EARLIER_VERSION, type: "module", exports: { ".": "./src/index.js" } }),
  );
  const file = path.join(scratch, `${PACKAGE}-${EARLIER_VERSION}.tgz`);
  execFileSync("tar", ["-czf", file, "-C", root, "package"]);
  fs.chmodSync(file, 0o644);
  fs.chmodSync(root, 0o755);
  return file;
}

/** The environment check, answered by the real claude-k8s binary (no failure of the service itself). */
async function checkEnvironmentThroughBinary(companyId) {
  const res = await testEnvironment(companyId);
  assert.equal(res.json.adapterType, TYPE, res.text);
  assert.ok(["pass", "warn", "fail"].includes(res.json.status), res.text);
  assert.ok(Array.isArray(res.json.checks) && res.json.checks.length > 0, res.text);
  const serviceFailure =
    /^claude_k8s_(binary_unavailable|serve_exited|handshake_failed|version_mismatch|protocol_mismatch)$/;
  assert.ok(!res.json.checks.some((c) => serviceFailure.test(c.code)), `the service itself failed: ${res.text}`);
}

/** The models Paperclip serves: listModels, through the binary's hello (no Bedrock on this server). */
async function checkModelsServed(companyId) {
  const res = await api("GET", `/companies/${companyId}/adapters/${TYPE}/models`, undefined, { expect: 200 });
  assert.deepEqual(
    res.json.map((m) => m.id),
    ANTHROPIC_MODELS.map((m) => m.id),
    res.text,
  );
}

/** A heartbeat through the adapter with an unreadable kubeconfig: it fails cleanly with the binary's error. */
async function heartbeatFailsWithoutCluster(companyId, name) {
  const agent = await api(
    "POST",
    `/companies/${companyId}/agents`,
    {
      name,
      role: "engineer",
      adapterType: TYPE,
      adapterConfig: { kubeconfig: "/nonexistent/kubeconfig", timeoutSec: 60 },
    },
    { expect: 201 },
  );
  const queued = await api("POST", `/agents/${agent.json.id}/heartbeat/invoke`, {}, { expect: 202 });
  const runId = queued.json.id;
  let result;
  const deadline = Date.now() + 60_000;
  do {
    await new Promise((r) => setTimeout(r, 250));
    result = (await api("GET", `/heartbeat-runs/${runId}`, undefined, { expect: 200 })).json;
  } while (["queued", "running"].includes(result.status) && Date.now() < deadline);
  assert.equal(result.status, "failed", `run ${runId} is ${result.status}\n--- server log ---\n${serverLogTail()}`);
  assert.equal(result.exitCode, null);
  assert.match(result.errorCode ?? "", /^k8s_/, JSON.stringify(result).slice(0, 1000));
  assert.match(result.error ?? "", /kubeconfig/);
  const log = await api("GET", `/heartbeat-runs/${runId}/log?offset=0&limitBytes=100000`, undefined, { expect: 200 });
  assert.ok(!log.text.includes("PAPERCLIP_API_KEY="), "the run log must not carry the token");
}

async function checkAdapterServed({ expectLocalPath, packageName = PACKAGE }) {
  const list = await api("GET", "/adapters", undefined, { expect: 200 });
  const entry = list.json.find((a) => a.type === TYPE);
  assert.ok(entry, `GET /api/adapters does not list ${TYPE}: ${list.text.slice(0, 500)}`);
  assert.equal(entry.loaded, true);
  assert.equal(entry.source, "external");
  assert.equal(entry.disabled, false);
  assert.equal(entry.version, version);
  assert.equal(entry.modelsCount, 11);
  assert.equal(entry.capabilities.supportsLocalAgentJwt, true);
  assert.equal(entry.capabilities.supportsAcp, false);
  if (expectLocalPath) assert.equal(entry.isLocalPath, true);
  else assert.equal(entry.packageName, packageName);
}

/** The served entry of claude_k8s in GET /api/adapters. */
async function servedAdapter() {
  return (await api("GET", "/adapters", undefined, { expect: 200 })).json.find((a) => a.type === TYPE);
}

describe("the adapter installed into a real Paperclip", { concurrency: false }, () => {
  let companyId;

  before(async () => {
    assert.ok(
      fs.existsSync(TARBALL),
      `${TARBALL} is missing: run 'make package' (cargo build --release -p claude-k8s && npm/pack.sh)`,
    );
    fs.copyFileSync(TARBALL, tgz);
    fs.chmodSync(tgz, 0o644);
    const health = await api("GET", "/health", undefined, { expect: 200 });
    assert.equal(health.json.version, "2026.916.1");
    await removeAdapter();
    companyId = await company();
  });

  after(async () => {
    await removeAdapter().catch(() => {});
    if (companyId) await api("DELETE", `/companies/${companyId}`).catch(() => {});
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("refuses a bare tarball path as packageName (2026.916.1 installs it, then looks for <path>/package.json)", async () => {
    const res = await api("POST", "/adapters/install", { packageName: tgz });
    assert.equal(res.status, 500, res.text);
    assert.match(res.json.error, /ENOTDIR/);
    assert.equal((await api("GET", `/adapters/${TYPE}`)).status, 404);
  });

  it('installs the tarball as an npm alias spec: packageName + version "file:<tarball>"', async () => {
    const res = await api(
      "POST",
      "/adapters/install",
      { packageName: PACKAGE, version: `file:${tgz}` },
      { expect: 201 },
    );
    assert.equal(res.json.type, TYPE);
    assert.equal(res.json.packageName, PACKAGE);
    assert.equal(res.json.version, version);
    const installed = path.join(DATA_DIR, "adapter-plugins", "node_modules", PACKAGE, "bin", "claude-k8s");
    assert.equal(fs.statSync(installed).mode & 0o777, 0o755, `${installed} lost its run bit`);
    // A server that imported an earlier copy from this path keeps it in its ESM cache (the install answers
    // requiresRestart only for a type it knew): reload, so the checks below run this tarball's code.
    await api("POST", `/adapters/${TYPE}/reload`, undefined, { expect: 200 });
  });

  it("lists claude_k8s as loaded, with its capabilities", async () => {
    await checkAdapterServed({ expectLocalPath: false });
  });

  it("serves our UI parser, and it evaluates the way the UI worker evaluates it", async () => {
    const res = await api("GET", `/adapters/${TYPE}/ui-parser.js`, undefined, { expect: 200 });
    assert.match(res.headers.get("content-type"), /javascript/);
    assert.equal(res.text, fs.readFileSync(path.join(REPO, "npm", "src", "ui-parser.cjs"), "utf8"));
    const exports = {};
    new Function("exports", "module", "self", "globalThis", `"use strict";\n{\n${res.text}\n}`)(
      exports,
      { exports },
      undefined,
      undefined,
    );
    const init = '{"type":"system","subtype":"init","session_id":"s-1","model":"claude-sonnet-4-6"}';
    assert.deepEqual(exports.parseStdoutLine(init, "t"), [
      { kind: "init", ts: "t", model: "claude-sonnet-4-6", sessionId: "s-1" },
    ]);
  });

  it("serves the config schema with every field", async () => {
    const res = await api("GET", `/adapters/${TYPE}/config-schema`, undefined, { expect: 200 });
    assert.deepEqual(
      res.json.fields.map((f) => f.key),
      [...CONFIG_KEYS],
    );
    const byKey = Object.fromEntries(res.json.fields.map((f) => [f.key, f]));
    assert.equal(byKey["resources.requests.cpu"].default, "1000m");
    assert.equal(byKey.podSpecPatch.type, "textarea");
  });

  it("serves the models (listModels, through the binary's hello)", async () => {
    await checkModelsServed(companyId);
  });

  it("runs the environment check through the real claude-k8s binary", async () => {
    await checkEnvironmentThroughBinary(companyId);
  });

  it("runs a heartbeat through the adapter: without a cluster it fails cleanly with the binary's error", async () => {
    await heartbeatFailsWithoutCluster(companyId, "K8s Claude (no cluster)");
  });

  it("reloads, and the reloaded copy still answers", async () => {
    const res = await api("POST", `/adapters/${TYPE}/reload`, undefined, { expect: 200 });
    assert.equal(res.json.reloaded, true);
    const env = await testEnvironment(companyId);
    assert.equal(env.json.adapterType, TYPE, env.text);
  });

  it("is removed by DELETE", async () => {
    const res = await api("DELETE", `/adapters/${TYPE}`, undefined, { expect: 200 });
    assert.equal(res.json.removed, true);
    assert.equal((await api("GET", `/adapters/${TYPE}`)).status, 404);
  });

  it("installs from an unpacked package directory with isLocalPath (dependencies installed beside it)", async () => {
    const dir = path.join(scratch, "local");
    fs.mkdirSync(dir, { recursive: true });
    await run("tar", ["-xzf", tgz, "-C", dir]);
    const pkgDir = path.join(dir, "package");
    await run("npm", ["install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--no-package-lock"], {
      cwd: pkgDir,
      env: stageEnv,
      timeout: 150_000,
    });
    await run("chmod", ["-R", "a+rX", dir]);
    const res = await api("POST", "/adapters/install", { packageName: pkgDir, isLocalPath: true }, { expect: 201 });
    assert.equal(res.json.type, TYPE);
    await checkAdapterServed({ expectLocalPath: true });
    const env = await testEnvironment(companyId);
    assert.equal(env.json.adapterType, TYPE, env.text);
    await api("DELETE", `/adapters/${TYPE}`, undefined, { expect: 200 });
  });

  it("installs and deletes through the paperclipai CLI (offline, --api-base)", async () => {
    const home = fs.mkdtempSync(path.join(scratch, "home-"));
    const cli = async (...args) => {
      const { stdout } = await run("paperclipai", [...args, "--api-base", BASE, "--json"], {
        env: { ...stageEnv, HOME: home },
        timeout: 150_000,
      });
      return JSON.parse(stdout);
    };
    const installed = await cli(
      "adapter",
      "install",
      "--payload-json",
      JSON.stringify({ packageName: PACKAGE, version: `file:${tgz}` }),
    );
    assert.equal(installed.type, TYPE);
    assert.equal(installed.version, version);
    const listed = await cli("adapter", "list");
    assert.ok(listed.some((a) => a.type === TYPE && a.loaded === true));
    // Reinstalled from the path imported (and then reloaded) earlier: the server's ESM cache hands back the first
    // copy, whose service was retired by the reload; it must still work.
    const env = await testEnvironment(companyId);
    assert.equal(env.json.adapterType, TYPE, env.text);
    assert.ok(!env.json.checks.some((c) => c.code.startsWith("claude_k8s_")), env.text);
    const deleted = await cli("adapter", "delete", TYPE);
    assert.equal(deleted.removed, true);
  });

  it("upgrades in place: over an earlier version the server has loaded, install + reload run this code", async () => {
    // Installed under an npm alias of its own (a name this server has never loaded), so that the modules Node
    // keeps for this path are the earlier version's, whatever this server loaded before.
    const alias = `${PACKAGE}-upgrade-${Date.now()}`;
    const earlier = earlierTarball();
    await api("POST", "/adapters/install", { packageName: alias, version: `file:${earlier}` }, { expect: 201 });
    let served = await servedAdapter();
    assert.equal(served?.version, EARLIER_VERSION);
    assert.equal(served?.modelsCount, 0, "the earlier version's code is the one loaded");

    await api("POST", "/adapters/install", { packageName: alias, version: `file:${tgz}` }, { expect: 201 });
    served = await servedAdapter();
    assert.equal(served?.version, version, "the new package is on disk");
    assert.equal(served?.modelsCount, 0, "the install alone hands back the entry Node imported first (its URL)");
    const reload = await api("POST", `/adapters/${TYPE}/reload`);
    assert.equal(reload.status, 200, `the reload after the upgrade failed: ${reload.text}`);
    await checkAdapterServed({ expectLocalPath: false, packageName: alias });
    await checkModelsServed(companyId);
    await checkEnvironmentThroughBinary(companyId);
    await heartbeatFailsWithoutCluster(companyId, "K8s Claude (after an upgrade in place)");
    await api("DELETE", `/adapters/${TYPE}`, undefined, { expect: 200 });
    const left = path.join(DATA_DIR, "adapter-plugins", "node_modules", alias);
    assert.ok(!fs.existsSync(left), `${left} is left after DELETE`);
  });
});
