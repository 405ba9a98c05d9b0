// The transcript parser the Paperclip UI runs for claude_k8s runs (GET /api/adapters/claude_k8s/ui-parser.js).
//
// This file is a SCRIPT BODY, not a module: the UI evaluates it in a locked-down Web Worker with
//   new Function("exports", "module", "self", "globalThis", '"use strict";\n{\n' + source + "\n}")
// so it has no import/export, no top-level await, no require, and touches nothing but `exports`. (The .cjs name
// makes `require`/`import` of "paperclip-adapter-claude-k8s/ui-parser" work in Node as well.)
//
// parseStdoutLine(line, ts) maps one line of the run's stdout to Paperclip transcript entries. Claude's
// stream-json lines are mapped exactly as claude_local's parseClaudeStdoutLine maps them (init, assistant,
// thinking, tool_call, user, tool_result, result; anything else is a `stdout` entry), plus two additions:
//   - `system/api_retry` lines become a readable `system` entry ("Model API error 429 (rate_limit): retry 3 of
//     10 in 2.2 s");
//   - lines the adapter itself writes, starting with "[claude-k8s]", become `system` entries.
// stderr chunks never reach this parser: the UI shows them as `stderr` entries itself.

var ADAPTER_PREFIX = "[claude-k8s]";

function asRecord(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? value : null;
}

function finiteOrZero(value) {
  return typeof value === "number" && isFinite(value) ? value : 0;
}

function str(value, fallback) {
  return typeof value === "string" ? value : fallback;
}

function parseJsonObject(line) {
  try {
    return asRecord(JSON.parse(line));
  } catch (e) {
    return null;
  }
}

// One entry of a result's `errors`: a string, or an object's message/error/code, or its JSON.
function errorText(value) {
  if (typeof value === "string") return value;
  var rec = asRecord(value);
  if (!rec) return "";
  var text =
    (typeof rec.message === "string" && rec.message) ||
    (typeof rec.error === "string" && rec.error) ||
    (typeof rec.code === "string" && rec.code) ||
    "";
  if (text) return text;
  try {
    return JSON.stringify(rec);
  } catch (e) {
    return "";
  }
}

/** The entries `entryOf` makes of each content block of the event's message (it returns one entry or null). */
function blockEntries(event, entryOf) {
  var message = asRecord(event.message) || {};
  var blocks = Array.isArray(message.content) ? message.content : [];
  var entries = [];
  for (var i = 0; i < blocks.length; i++) {
    var block = asRecord(blocks[i]);
    var entry = block && entryOf(block);
    if (entry) entries.push(entry);
  }
  return entries;
}

function assistantEntries(event, ts) {
  return blockEntries(event, function (block) {
    if (block.type === "text") return str(block.text, "") ? { kind: "assistant", ts: ts, text: block.text } : null;
    if (block.type === "thinking") {
      return str(block.thinking, "") ? { kind: "thinking", ts: ts, text: block.thinking } : null;
    }
    if (block.type !== "tool_use") return null;
    var toolUseId =
      typeof block.id === "string" ? block.id : typeof block.tool_use_id === "string" ? block.tool_use_id : undefined;
    return {
      kind: "tool_call",
      ts: ts,
      name: str(block.name, "unknown"),
      toolUseId: toolUseId,
      input: block.input === undefined || block.input === null ? {} : block.input,
    };
  });
}

function toolResultText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  var parts = [];
  for (var i = 0; i < content.length; i++) {
    var part = asRecord(content[i]);
    if (part && typeof part.text === "string") parts.push(part.text);
  }
  return parts.join("\n");
}

function userEntries(event, ts) {
  return blockEntries(event, function (block) {
    if (block.type === "text") return str(block.text, "") ? { kind: "user", ts: ts, text: block.text } : null;
    if (block.type !== "tool_result") return null;
    return {
      kind: "tool_result",
      ts: ts,
      toolUseId: str(block.tool_use_id, ""),
      content: toolResultText(block.content),
      isError: block.is_error === true,
    };
  });
}

function resultEntry(event, ts) {
  var usage = asRecord(event.usage) || {};
  return {
    kind: "result",
    ts: ts,
    text: str(event.result, ""),
    inputTokens: finiteOrZero(usage.input_tokens),
    outputTokens: finiteOrZero(usage.output_tokens),
    cachedTokens: finiteOrZero(usage.cache_read_input_tokens),
    costUsd: finiteOrZero(event.total_cost_usd),
    subtype: str(event.subtype, ""),
    isError: event.is_error === true,
    errors: Array.isArray(event.errors) ? event.errors.map(errorText).filter(Boolean) : [],
  };
}

// "Model API error 429 (rate_limit): retry 3 of 10 in 2.2 s"
function apiRetryText(event) {
  var status = typeof event.error_status === "number" ? " " + event.error_status : "";
  var kind = typeof event.error === "string" && event.error ? " (" + event.error + ")" : "";
  var attempt = typeof event.attempt === "number" ? event.attempt : null;
  var max = typeof event.max_retries === "number" ? event.max_retries : null;
  var retry = attempt === null ? "retrying" : "retry " + attempt + (max === null ? "" : " of " + max);
  var delay =
    typeof event.retry_delay_ms === "number" && isFinite(event.retry_delay_ms)
      ? " in " + (Math.round(event.retry_delay_ms / 100) / 10).toFixed(1) + " s"
      : "";
  return "Model API error" + status + kind + ": " + retry + delay;
}

function parseStdoutLine(line, ts) {
  var text = typeof line === "string" ? line : String(line);
  if (text.slice(0, ADAPTER_PREFIX.length) === ADAPTER_PREFIX) {
    return [{ kind: "system", ts: ts, text: text.slice(ADAPTER_PREFIX.length).trim() }];
  }
  var event = parseJsonObject(text);
  if (!event) return [{ kind: "stdout", ts: ts, text: text }];
  var type = str(event.type, "");

  if (type === "system" && event.subtype === "init") {
    return [{ kind: "init", ts: ts, model: str(event.model, "unknown"), sessionId: str(event.session_id, "") }];
  }
  if (type === "system" && event.subtype === "api_retry") {
    return [{ kind: "system", ts: ts, text: apiRetryText(event) }];
  }
  if (type === "assistant") {
    var said = assistantEntries(event, ts);
    return said.length > 0 ? said : [{ kind: "stdout", ts: ts, text: text }];
  }
  if (type === "user") {
    var answered = userEntries(event, ts);
    if (answered.length > 0) return answered;
  }
  if (type === "result") {
    return [resultEntry(event, ts)];
  }
  return [{ kind: "stdout", ts: ts, text: text }];
}

exports.parseStdoutLine = parseStdoutLine;
