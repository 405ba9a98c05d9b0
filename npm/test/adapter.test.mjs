// The adapter object Paperclip registers: its shape, the config schema and doc, the session codec, the models.
import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { agentConfigurationDoc, CONFIG_KEYS, getConfigSchema } from "../src/config-schema.js";
import * as entry from "../src/index.js";
import { ANTHROPIC_MODELS, BEDROCK_MODELS, modelsList } from "../src/models.js";
import { sessionCodec } from "../src/session-codec.js";

const REPLAY = fileURLToPath(new URL("../test-support/replay-serve.mjs", import.meta.url));
const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8"));

describe("package.json", () => {
  it("is what Paperclip's loader and npm expect", () => {
    assert.equal(pkg.name, "paperclip-adapter-claude-k8s");
    assert.equal(pkg.type, "module");
    assert.deepEqual(pkg.paperclip, { adapterUiParser: "1.0.0" });
    assert.equal(pkg.exports["."].import, "./src/index.js");
    assert.equal(pkg.exports["./ui-parser"], "./src/ui-parser.cjs");
    assert.ok(pkg.files.includes("bin/claude-k8s"));
    assert.equal(pkg.dependencies["@paperclipai/adapter-utils"], "^2026.916.1");
    assert.equal(pkg.engines.node, ">=20");
    for (const script of ["preinstall", "install", "postinstall", "prepare", "prepack", "postpack"]) {
      assert.equal(pkg.scripts?.[script], undefined, `no ${script} script`);
    }
  });

  it("has the workspace version of Cargo.toml", () => {
    const cargo = fs.readFileSync(new URL("../../Cargo.toml", import.meta.url), "utf8");
    const version = cargo.match(/\[workspace\.package\][^[]*?\nversion\s*=\s*"([^"]+)"/)?.[1];
    assert.equal(pkg.version, version);
    assert.equal(entry.version, version);
  });
});

describe("createServerAdapter()", () => {
  const adapter = entry.createServerAdapter();

  it("returns a plain object that survives Paperclip's object spread", () => {
    assert.equal(Object.getPrototypeOf(adapter), Object.prototype);
    const registered = { ...adapter, sessionManagement: adapter.sessionManagement ?? undefined };
    assert.equal(registered.type, "claude_k8s");
    for (const fn of ["execute", "testEnvironment", "listModels", "getConfigSchema"]) {
      assert.equal(typeof registered[fn], "function", fn);
    }
    assert.equal(registered.supportsLocalAgentJwt, true);
    assert.equal(typeof registered.agentConfigurationDoc, "string");
    assert.equal(typeof registered.sessionCodec.serialize, "function");
    assert.equal(typeof registered.sessionCodec.getDisplayId, "function");
  });

  it("declares session management like claude_local's community k8s adapter", () => {
    assert.deepEqual(adapter.sessionManagement, {
      supportsSessionResume: true,
      nativeContextManagement: "confirmed",
      defaultSessionCompaction: { enabled: true, maxSessionRuns: 0, maxRawInputTokens: 0, maxSessionAgeHours: 0 },
    });
  });

  it("does not start the service just by being created", () => {
    assert.equal(entry.servicePid(), null);
  });

  it("offers claude_local's static Anthropic list as `models`, whatever the env (no Bedrock rule in the shim)", () => {
    assert.deepEqual(adapter.models, ANTHROPIC_MODELS);
    assert.ok(adapter.models.some((m) => m.id === "claude-sonnet-4-6"));
    const saved = process.env.CLAUDE_CODE_USE_BEDROCK;
    try {
      process.env.CLAUDE_CODE_USE_BEDROCK = "1";
      assert.deepEqual(entry.createServerAdapter().models, ANTHROPIC_MODELS);
    } finally {
      if (saved === undefined) delete process.env.CLAUDE_CODE_USE_BEDROCK;
      else process.env.CLAUDE_CODE_USE_BEDROCK = saved;
    }
    assert.deepEqual(modelsList(true), BEDROCK_MODELS);
    assert.deepEqual(modelsList(false), ANTHROPIC_MODELS);
  });

  it("lists the models of the binary's own Bedrock reading (its hello), the one the runs follow", async () => {
    // The binary reads CLAUDE_CODE_USE_BEDROCK=yes as Bedrock where claude_local's static rule would not: the
    // list follows the binary. Played by the corpus replay with the hello's `bedrock` set either way.
    const saved = { ...process.env };
    try {
      process.env.CLAUDE_K8S_BINARY_PATH = REPLAY;
      process.env.REPLAY_CORPUS = "handshake.jsonl";
      process.env.CLAUDE_CODE_USE_BEDROCK = "yes";
      for (const [bedrock, want] of [[true, BEDROCK_MODELS], [false, ANTHROPIC_MODELS]]) {
        process.env.REPLAY_HELLO = JSON.stringify({ bedrock });
        assert.deepEqual(await adapter.listModels(), want, `hello.bedrock ${bedrock}`);
        await entry.shutdownService();
      }
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
  });

  it("fails listModels with the service's error when the binary cannot start", async () => {
    const saved = process.env.CLAUDE_K8S_BINARY_PATH;
    try {
      process.env.CLAUDE_K8S_BINARY_PATH = "/nonexistent/claude-k8s";
      await assert.rejects(adapter.listModels(), (err) => {
        assert.equal(err.code, "claude_k8s_binary_unavailable");
        assert.match(err.message, /\/nonexistent\/claude-k8s/);
        return true;
      });
    } finally {
      if (saved === undefined) delete process.env.CLAUDE_K8S_BINARY_PATH;
      else process.env.CLAUDE_K8S_BINARY_PATH = saved;
      await entry.shutdownService();
    }
  });
});

describe("config schema", () => {
  const { fields } = getConfigSchema();

  // The seed README's fields (env is Paperclip's own editor), claude_local's prompt fields, and this adapter's own.
  const expected = [
    "model", "effort", "maxTurnsPerRun", "dangerouslySkipPermissions", "instructionsFilePath", "extraArgs",
    "namespace", "image", "imagePullPolicy", "kubeconfig", "serviceAccountName",
    "resources.requests.cpu", "resources.requests.memory", "resources.limits.cpu", "resources.limits.memory",
    "nodeSelector", "tolerations", "labels", "ttlSecondsAfterFinished", "retainJobs", "timeoutSec", "graceSec",
    "promptTemplate", "bootstrapPromptTemplate", "cwd", "podSpecPatch", "initImage", "paperclipApiUrl",
  ];

  it("has every expected field, each once, and nothing else", () => {
    assert.deepEqual([...fields.map((f) => f.key)].sort(), [...expected].sort());
    assert.deepEqual(CONFIG_KEYS, fields.map((f) => f.key));
    assert.ok(!fields.some((f) => f.key === "env"), "env must stay an object: Paperclip's own editor sets it");
  });

  it("has well-formed fields, in groups, with hints", () => {
    const types = new Set(["text", "select", "toggle", "number", "textarea", "combobox"]);
    for (const f of fields) {
      assert.ok(types.has(f.type), `${f.key}: type ${f.type}`);
      assert.ok(f.label && f.hint && f.group, `${f.key}: label, hint and group`);
      assert.equal(f.doc, undefined, "the doc text stays out of the served schema");
      if (f.options) {
        for (const o of f.options) assert.ok(typeof o.label === "string" && typeof o.value === "string");
      }
    }
    assert.deepEqual([...new Set(fields.map((f) => f.group))], ["Claude", "Prompt", "Kubernetes", "Resources", "Run"]);
  });

  it("gives toggles, numbers and selects the binary's defaults (the UI writes defaults on create)", () => {
    const byKey = Object.fromEntries(fields.map((f) => [f.key, f]));
    for (const f of fields.filter((f) => ["toggle", "number", "select"].includes(f.type))) {
      assert.notEqual(f.default, undefined, `${f.key} needs a default`);
      if (f.type === "select") assert.ok(f.options.some((o) => o.value === f.default), `${f.key} default is an option`);
    }
    assert.equal(byKey.dangerouslySkipPermissions.default, true);
    assert.equal(byKey.retainJobs.default, false);
    assert.equal(byKey.graceSec.default, 60);
    assert.equal(byKey.timeoutSec.default, 0);
    assert.equal(byKey.ttlSecondsAfterFinished.default, 300);
    assert.equal(byKey.maxTurnsPerRun.default, 0);
    assert.equal(byKey.imagePullPolicy.default, "IfNotPresent");
    assert.equal(byKey.effort.default, "");
    assert.equal(byKey.initImage.default, "busybox:1.36");
    assert.equal(byKey["resources.requests.cpu"].default, "1000m");
    assert.equal(byKey["resources.limits.memory"].default, "8Gi");
    assert.equal(byKey.podSpecPatch.type, "textarea");
  });

  it("returns a fresh copy each time", () => {
    const a = getConfigSchema();
    a.fields[0].label = "changed";
    assert.notEqual(getConfigSchema().fields[0].label, "changed");
  });

  it("is documented field by field in agentConfigurationDoc", () => {
    for (const key of [...expected, "env"]) {
      assert.ok(agentConfigurationDoc.includes(`- ${key} (`), `doc describes ${key}`);
    }
    assert.match(agentConfigurationDoc, /^# claude_k8s agent configuration/);
  });
});

describe("session codec (the child owns the session params)", () => {
  it("round-trips what the child's result carries, claude_local's fields included", () => {
    const params = {
      sessionId: "11111111-2222-3333-4444-555555555555",
      cwd: "/paperclip/instances/default/workspaces/a1",
      promptBundleKey: "bundle",
      mcpServerIdentity: '[{"name":"p","url":"u","connectionId":"c"}]',
      workspaceId: "ws",
      repoUrl: "https://example.com/r.git",
      repoRef: "main",
    };
    assert.deepEqual(sessionCodec.deserialize(sessionCodec.serialize(params)), params);
    assert.equal(sessionCodec.getDisplayId(params), params.sessionId);
  });

  it("keeps an object as it is and decides nothing about its fields (aliases are read by the child)", () => {
    const raw = { session_id: " s-1 ", workdir: "/w", prompt_bundle_key: "k", extra: 1 };
    assert.deepEqual(sessionCodec.deserialize(raw), raw);
    assert.deepEqual(sessionCodec.serialize(raw), raw);
    assert.notEqual(sessionCodec.deserialize(raw), raw, "a copy");
  });

  it("has nothing to keep but an object", () => {
    for (const raw of [null, undefined, "s", [], 5]) {
      assert.equal(sessionCodec.deserialize(raw), null);
      assert.equal(sessionCodec.serialize(raw ?? null), null);
    }
    assert.equal(sessionCodec.getDisplayId(null), null);
    assert.equal(sessionCodec.getDisplayId({}), null);
    assert.equal(sessionCodec.getDisplayId({ sessionId: "  " }), null);
  });
});
