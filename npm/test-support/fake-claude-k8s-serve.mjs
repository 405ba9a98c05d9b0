#!/usr/bin/env node
// FAKE `claude-k8s serve`, for the shim's unit tests ONLY.
//
// A stand-in for the real Rust binary: it speaks the stdio protocol of docs/protocol.md (hello, execute, cancel,
// test_environment, shutdown, EOF) with scripted behaviour and no Kubernetes at all, so the tests exercise the
// shim's channel, service and execute code, not the product. The real binary is tested by the Rust suite
// (crates/claude-k8s/tests/serve.rs) and end to end by test/stage/.
//
// Behaviour, from the environment:
//   FAKE_SERVE_PROTOCOL   protocol number in hello (default 1)
//   FAKE_SERVE_VERSION    version in hello (default "0.1.0")
//   FAKE_SERVE_HELLO      "none": never say hello; "garbage": start with a non-hello line
//   FAKE_SERVE_EXIT_FILE  a file written with "exit <reason>" when the fake exits
//   FAKE_SERVE_STDERR     a line written to stderr at start
// and per execute request, from params.config.fake (a string):
//   "echo" (default)  log two stdout lines + one stderr line, a meta and an event, then a result echoing params
//   "hang"            wait for a cancel, then a cancellation-acknowledged result
//   "die"             write "fatal: boom" to stderr and exit with code 3
//   "error"           answer with error code "bad_config"
//   "slow:<ms>"       like echo, after <ms> milliseconds
//   "interleave"      two log lines with a pause, so concurrent requests interleave

import fs from "node:fs";
import readline from "node:readline";

const env = process.env;
const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const exitFile = env.FAKE_SERVE_EXIT_FILE;

function exit(code, reason) {
  if (exitFile) fs.writeFileSync(exitFile, `exit ${reason}\n`);
  process.exit(code);
}

if (env.FAKE_SERVE_STDERR) process.stderr.write(`${env.FAKE_SERVE_STDERR}\n`);
if (env.FAKE_SERVE_HELLO === "garbage") send({ type: "log", id: "x", stream: "stdout", chunk: "too early\n" });
if (env.FAKE_SERVE_HELLO !== "none") {
  send({ type: "hello", protocol: Number(env.FAKE_SERVE_PROTOCOL ?? 1), version: env.FAKE_SERVE_VERSION ?? "0.1.0" });
}

const hanging = new Map(); // id -> resolve

function echo(id, params) {
  send({ type: "log", id, stream: "stdout", chunk: '{"type":"system","subtype":"init","session_id":"s-1","model":"m"}\n' });
  send({ type: "meta", id, meta: { adapterType: "claude_k8s", command: "claude", promptMetrics: params.prompt?.freshMetrics } });
  send({ type: "log", id, stream: "stderr", chunk: "[claude-k8s] pod scheduled\n" });
  send({ type: "event", id, event: { eventType: "fake.progress", message: "half way" } });
  send({ type: "future_event_type", id, whatever: true });
  send({ type: "log", id, stream: "stdout", chunk: '{"type":"result","subtype":"success","result":"done"}\n' });
  send({
    type: "result",
    id,
    result: { exitCode: 0, signal: null, timedOut: false, summary: "done", resultJson: { echoedParams: params } },
  });
}

async function execute(id, params) {
  const script = typeof params?.config?.fake === "string" ? params.config.fake : "echo";
  if (script === "hang") {
    send({ type: "log", id, stream: "stdout", chunk: "[claude-k8s] job created\n" });
    const reason = await new Promise((resolve) => hanging.set(id, resolve));
    send({ type: "log", id, stream: "stdout", chunk: `[claude-k8s] cancelled: ${reason ?? ""}\n` });
    send({
      type: "result",
      id,
      result: {
        exitCode: null,
        signal: "SIGTERM",
        timedOut: false,
        errorMessage: "cancelled",
        resultJson: { executionCancellation: { state: "acknowledged", acknowledgedAt: new Date().toISOString(), forced: false }, reason },
      },
    });
    return;
  }
  if (script === "die") {
    process.stderr.write("fatal: boom\n", () => exit(3, "die"));
    return;
  }
  if (script === "error") {
    send({ type: "error", id, code: "bad_config", message: "namespace: not a valid name" });
    return;
  }
  if (script.startsWith("slow:")) {
    await new Promise((resolve) => setTimeout(resolve, Number(script.slice(5))));
    echo(id, params);
    return;
  }
  if (script === "interleave") {
    send({ type: "log", id, stream: "stdout", chunk: `${id} first\n` });
    await new Promise((resolve) => setTimeout(resolve, 50));
    send({ type: "log", id, stream: "stdout", chunk: `${id} second\n` });
    send({ type: "result", id, result: { exitCode: 0, signal: null, timedOut: false } });
    return;
  }
  echo(id, params);
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    send({ type: "error", id: null, code: "bad_request", message: "not JSON" });
    return;
  }
  switch (request.type) {
    case "execute":
      execute(request.id, request.params);
      return;
    case "cancel": {
      const resolve = hanging.get(request.id);
      hanging.delete(request.id);
      resolve?.(request.reason);
      return;
    }
    case "test_environment":
      send({
        type: "result",
        id: request.id,
        result: {
          adapterType: request.params?.adapterType,
          status: "pass",
          checks: [{ code: "fake_ok", level: "info", message: `company ${request.params?.companyId}` }],
          testedAt: new Date().toISOString(),
        },
      });
      return;
    case "shutdown":
      exit(0, "shutdown");
      return;
    default:
      send({ type: "error", id: request.id ?? null, code: "unknown_request", message: `unknown type ${request.type}` });
  }
});
lines.on("close", () => exit(0, "eof"));
