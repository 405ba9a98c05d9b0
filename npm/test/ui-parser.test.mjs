// The UI parser, evaluated exactly as Paperclip's UI worker evaluates it, on every captured Claude 2.1.328
// stream-json line, and compared with claude_local 2026.916.1's own parseClaudeStdoutLine on the same lines.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const PARSER_FILE = path.join(here, "..", "src", "ui-parser.cjs");
const FIXTURES = path.join(here, "..", "..", "test", "fixtures", "claude-2.1.328");
const CLAUDE_LOCAL_VERSION = "2026.916.1";
const TS = "2026-11-25T07:00:00.000Z";

/** What Paperclip's worker does with GET /api/adapters/:type/ui-parser.js (server ui-dist, string constant). */
function loadLikePaperclip(source) {
  const exports = {};
  const module = { exports };
  const factory = new Function("exports", "module", "self", "globalThis", `"use strict";\n{\n${source}\n}`);
  factory(exports, module, undefined, undefined);
  const resolved =
    module.exports && typeof module.exports === "object" && Object.keys(module.exports).length > 0
      ? module.exports
      : exports;
  return resolved;
}

/**
 * claude_local's dist/ui/parse-stdout.js, from (in order) CLAUDE_LOCAL_PACKAGE_DIR, the stage's Paperclip install,
 * or `npm pack @paperclipai/adapter-claude-local@2026.916.1` into a cache under the temp dir. Its one import (the
 * ACP line parser, for `acpx.*` lines that this adapter never emits) is replaced by a stub.
 */
async function loadClaudeLocalParser() {
  const rel = path.join("dist", "ui", "parse-stdout.js");
  const candidates = [
    process.env.CLAUDE_LOCAL_PACKAGE_DIR,
    path.join(
      process.env.CLAUDE_K8S_STAGE_CACHE ?? "/var/cache/claude-k8s-stage",
      "paperclip/app/node_modules/@paperclipai/adapter-claude-local",
    ),
    path.join(os.tmpdir(), "claude-k8s-test-cache", `adapter-claude-local-${CLAUDE_LOCAL_VERSION}`, "package"),
  ].filter(Boolean);
  let dir = candidates.find((d) => {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(d, "package.json"), "utf8"));
      return pkg.version === CLAUDE_LOCAL_VERSION && fs.existsSync(path.join(d, rel));
    } catch {
      return false;
    }
  });
  if (!dir) {
    const cache = path.dirname(candidates[candidates.length - 1]);
    fs.mkdirSync(cache, { recursive: true });
    const tgz = execFileSync(
      "npm",
      ["pack", "--silent", "--ignore-scripts", `@paperclipai/adapter-claude-local@${CLAUDE_LOCAL_VERSION}`],
      { cwd: cache, encoding: "utf8", timeout: 120_000 },
    ).trim().split("\n").pop();
    execFileSync("tar", ["-xzf", tgz, "package/package.json", `package/${rel}`], { cwd: cache });
    dir = path.join(cache, "package");
  }
  const source = fs
    .readFileSync(path.join(dir, rel), "utf8")
    .replace(
      /^import \{ parseAcpxStdoutLine \} from "[^"]+";$/m,
      'const parseAcpxStdoutLine = () => { throw new Error("acpx lines are not expected here"); };',
    );
  assert.ok(!/^import /m.test(source), "claude_local's parser has an import this test does not stub");
  const file = path.join(os.tmpdir(), `claude-local-parse-stdout-${process.pid}.mjs`);
  fs.writeFileSync(file, source);
  try {
    return (await import(pathToFileURL(file).href)).parseClaudeStdoutLine;
  } finally {
    fs.rmSync(file, { force: true });
  }
}

const source = fs.readFileSync(PARSER_FILE, "utf8");
const fixtureFiles = fs.readdirSync(FIXTURES).filter((f) => f.endsWith(".jsonl")).sort();
const fixtureLines = fixtureFiles.flatMap((file) =>
  fs
    .readFileSync(path.join(FIXTURES, file), "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((line, i) => ({ file, n: i + 1, line })),
);

// Lines the fixtures lack but Claude (or the adapter) produces.
const syntheticLines = [
  JSON.stringify({ type: "assistant", message: { content: [{ type: "thinking", thinking: "Let me think." }] } }),
  JSON.stringify({
    type: "assistant",
    message: {
      content: [
        { type: "text", text: "Two things." },
        { type: "tool_use", tool_use_id: "tu-legacy", name: "Read", input: null },
        { type: "tool_use", id: "tu-2" },
        { type: "text", text: "" },
        "not a block",
      ],
    },
  }),
  JSON.stringify({ type: "assistant", message: { content: [] } }),
  JSON.stringify({
    type: "user",
    message: {
      content: [
        { type: "text", text: "a user turn" },
        { type: "tool_result", tool_use_id: "tu-2", is_error: true, content: [{ type: "text", text: "a" }, { type: "image" }, { type: "text", text: "b" }] },
        { type: "tool_result", content: { odd: true } },
      ],
    },
  }),
  JSON.stringify({ type: "user", message: { content: [{ type: "image" }] } }),
  JSON.stringify({
    type: "result",
    subtype: "error_max_turns",
    is_error: true,
    errors: ["plain", { message: "from message" }, { error: "from error" }, { code: "E_CODE" }, { other: 1 }, 7, ""],
    usage: { input_tokens: "12", output_tokens: 3, cache_read_input_tokens: Infinity },
  }),
  JSON.stringify({ type: "result" }),
  JSON.stringify({ type: "system", subtype: "init" }),
  JSON.stringify({ type: "system", subtype: "compact_boundary" }),
  JSON.stringify({ type: "stream_event", event: {} }),
  "[paperclip] Claude session \"x\" is not a valid UUID and will not be passed to --resume.",
  "plain text output",
  "",
  "[1,2,3]",
  "null",
  "42",
  '{"type":',
];

describe("ui-parser.cjs", () => {
  let parseStdoutLine;
  let claudeLocal;
  before(async () => {
    parseStdoutLine = loadLikePaperclip(source).parseStdoutLine;
    claudeLocal = await loadClaudeLocalParser();
  });

  it("is a script body: no import/export/require, loads with new Function, exports parseStdoutLine", () => {
    const code = source.replace(/^\s*\/\/.*$/gm, "");
    assert.doesNotMatch(code, /^\s*(import|export)\b/m);
    assert.doesNotMatch(code, /\brequire\s*\(/);
    assert.doesNotMatch(code, /\bawait\b/);
    assert.doesNotMatch(code, /\b(self|globalThis|window|document)\b/);
    assert.equal(typeof parseStdoutLine, "function");
    // Node can load it too (package exports["./ui-parser"]).
    const viaNode = execFileSync(process.execPath, [
      "-e",
      `const p = require(${JSON.stringify(PARSER_FILE)}); console.log(typeof p.parseStdoutLine)`,
    ]).toString();
    assert.equal(viaNode.trim(), "function");
  });

  it(`parses every fixture line (${fixtureLines.length} lines in ${fixtureFiles.length} files)`, () => {
    assert.ok(fixtureLines.length >= 15, `fixtures missing in ${FIXTURES}`);
    const kinds = new Set();
    for (const { file, n, line } of fixtureLines) {
      const entries = parseStdoutLine(line, TS);
      assert.ok(Array.isArray(entries) && entries.length > 0, `${file}:${n} gave no entries`);
      for (const e of entries) {
        assert.equal(e.ts, TS);
        kinds.add(e.kind);
      }
    }
    for (const kind of ["init", "assistant", "tool_call", "tool_result", "result", "system"]) {
      assert.ok(kinds.has(kind), `no ${kind} entry from the fixtures`);
    }
  });

  it("matches claude_local's parseClaudeStdoutLine on every fixture line except system/api_retry", () => {
    let compared = 0;
    for (const { file, n, line } of fixtureLines) {
      const event = JSON.parse(line);
      if (event.type === "system" && event.subtype === "api_retry") continue;
      assert.deepEqual(parseStdoutLine(line, TS), claudeLocal(line, TS), `${file}:${n}`);
      compared++;
    }
    assert.ok(compared >= 12);
  });

  it("matches claude_local on edge cases the fixtures lack", () => {
    for (const line of syntheticLines) {
      assert.deepEqual(parseStdoutLine(line, TS), claudeLocal(line, TS), line);
    }
  });

  it("maps the fixtures' content as expected", () => {
    const byFile = (name) => fixtureLines.filter((l) => l.file === name).flatMap((l) => parseStdoutLine(l.line, TS));
    const text = byFile("text-reply.jsonl");
    assert.deepEqual(text[0], { kind: "init", ts: TS, model: "claude-sonnet-4-6", sessionId: text[0].sessionId });
    assert.match(text[0].sessionId, /^[0-9a-f-]{36}$/);
    assert.equal(text[1].kind, "assistant");
    const result = text[text.length - 1];
    assert.equal(result.kind, "result");
    assert.equal(result.subtype, "success");
    assert.equal(result.isError, false);
    assert.ok(result.costUsd > 0 && result.outputTokens > 0);

    const bash = byFile("bash-tool-use.jsonl");
    const call = bash.find((e) => e.kind === "tool_call");
    const answer = bash.find((e) => e.kind === "tool_result");
    assert.equal(call.name, "Bash");
    assert.equal(answer.toolUseId, call.toolUseId);
    assert.equal(answer.isError, false);

    const unknown = byFile("resume-unknown-session.jsonl");
    assert.equal(unknown.length, 1);
    assert.equal(unknown[0].subtype, "error_during_execution");
    assert.deepEqual(unknown[0].errors, ["No conversation found with session ID: 00000000-0000-0000-0000-000000000000"]);

    const denied = byFile("error-401-max-retries-1.jsonl").find((e) => e.kind === "result");
    assert.equal(denied.isError, true);
    assert.equal(denied.subtype, "success");
  });

  it("shows system/api_retry as readable progress (claude_local shows the raw JSON)", () => {
    const lines = fixtureLines.filter((l) => l.line.includes('"api_retry"'));
    assert.ok(lines.length >= 3);
    const texts = lines.map((l) => parseStdoutLine(l.line, TS));
    assert.deepEqual(texts.find((t) => t[0].text.includes("retry 3 of 10")), [
      { kind: "system", ts: TS, text: "Model API error 429 (rate_limit): retry 3 of 10 in 2.2 s" },
    ]);
    for (const { line } of lines) assert.equal(claudeLocal(line, TS)[0].kind, "stdout");
    assert.deepEqual(parseStdoutLine('{"type":"system","subtype":"api_retry"}', TS), [
      { kind: "system", ts: TS, text: "Model API error: retrying" },
    ]);
  });

  it("shows the adapter's own [claude-k8s] lines as system entries", () => {
    assert.deepEqual(parseStdoutLine("[claude-k8s] pod ac-agent-run-1a2b3c scheduled on node-1", TS), [
      { kind: "system", ts: TS, text: "pod ac-agent-run-1a2b3c scheduled on node-1" },
    ]);
    assert.deepEqual(parseStdoutLine("[claude-k8s]", TS), [{ kind: "system", ts: TS, text: "" }]);
  });
});
