#!/usr/bin/env node
// Plays the answers of the golden protocol corpus (test/protocol/*.jsonl, see its README) as `claude-k8s serve`
// would, for the shim's tests. The corpus is what the real binary says (crates/claude-k8s/tests/serve.rs checks
// the files it can replay without a cluster; the others were recorded from it on the stage), so the shim is
// tested against the real protocol, not against a second hand-written fake.
//
// The corpus's exchanges are keyed by their request id: a request of the shim plays the exchange of its type whose
// `params.runId` is the request's, else the first one not played yet, else the first one, with the ids rewritten
// to the shim's; a `cancel` in an exchange waits for the shim's cancel of that id.
//
// Environment: REPLAY_CORPUS  corpus file names in test/protocol, comma-separated (required)
//              REPLAY_HELLO   JSON merged into the hello, or "none" (no hello)
//              REPLAY_FAULT   comma-separated transport faults on the N-th request (1-based):
//                             exit:N:CODE (stderr "fatal: boom", then exit), garbage:N (a line that is not JSON),
//                             long:N:BYTES (a log line of BYTES for that request first), mute:N (no answer),
//                             deaf (never read stdin)
//              REPLAY_PACE_MS wait this long before each answer line
//              REPLAY_LOG     append every request line here;  REPLAY_EXIT_FILE  "exit <reason>" written at exit
//              REPLAY_STDERR  a line written to stderr at start

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const env = process.env;
if (env.REPLAY_STDERR) process.stderr.write(`${env.REPLAY_STDERR}\n`);
const CORPUS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../test/protocol");
const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function exit(code, reason) {
  if (env.REPLAY_EXIT_FILE) fs.writeFileSync(env.REPLAY_EXIT_FILE, `exit ${reason}\n`);
  process.exit(code);
}

// Exchanges by corpus id: the request, then its answers and later requests (cancel) in corpus order.
let hello = null;
const exchanges = [];
for (const name of (env.REPLAY_CORPUS ?? "").split(",").filter(Boolean)) {
  const byId = new Map();
  const entries = fs.readFileSync(path.join(CORPUS_DIR, name), "utf8").split("\n").filter((l) => l.trim());
  for (const entry of entries.slice(1).map((l) => JSON.parse(l))) {
    const message = entry.send ?? entry.recv;
    if (entry.recv?.type === "hello") hello ??= entry.recv;
    if (typeof message?.id !== "string") continue;
    if (entry.send && !byId.has(message.id)) {
      const exchange = { type: message.type, runId: message.params?.runId, steps: [], used: false };
      byId.set(message.id, exchange);
      exchanges.push(exchange);
    } else {
      byId.get(message.id)?.steps.push(entry);
    }
  }
}

const faults = (env.REPLAY_FAULT ?? "").split(",").filter(Boolean).map((f) => f.split(":"));
const faultAt = (kind, n) => faults.find(([k, at]) => k === kind && Number(at) === n);
const cancels = new Map(); // real id -> resolve of the wait for its cancel
const cancelled = new Set(); // real ids whose cancel came before the exchange waited for it

function pick(request) {
  const ofType = exchanges.filter((e) => e.type === request.type);
  const exchange =
    ofType.find((e) => e.runId !== undefined && e.runId === request.params?.runId) ?? ofType.find((e) => !e.used) ?? ofType[0];
  if (exchange) exchange.used = true;
  return exchange;
}

async function play(exchange, id) {
  for (const step of exchange.steps) {
    if (step.send) {
      if (!cancelled.has(id)) await new Promise((resolve) => cancels.set(id, resolve));
      continue;
    }
    if (env.REPLAY_PACE_MS) await sleep(Number(env.REPLAY_PACE_MS));
    send({ ...step.recv, id });
  }
}

if (env.REPLAY_HELLO !== "none") send({ ...hello, ...(env.REPLAY_HELLO ? JSON.parse(env.REPLAY_HELLO) : {}) });

let count = 0;
if (faults.some(([k]) => k === "deaf")) {
  setInterval(() => {}, 60_000); // alive, never reading stdin, until killed
} else {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("close", () => exit(0, "eof"));
  lines.on("line", (line) => {
    if (env.REPLAY_LOG) fs.appendFileSync(env.REPLAY_LOG, `${line}\n`);
    const request = JSON.parse(line);
    if (request.type === "shutdown") exit(0, "shutdown");
    if (request.type === "cancel") {
      cancelled.add(request.id);
      return cancels.get(request.id)?.();
    }
    const n = ++count;
    const died = faultAt("exit", n);
    if (died) return process.stderr.write("fatal: boom\n", () => exit(Number(died[2]), "fault"));
    if (faultAt("garbage", n)) process.stdout.write("this is not JSON\n");
    const long = faultAt("long", n);
    if (long) send({ type: "log", id: request.id, stream: "stdout", chunk: `${"A".repeat(Number(long[2]))}\n` });
    if (faultAt("mute", n)) return;
    const exchange = pick(request);
    if (!exchange) {
      process.stderr.write(`replay: the corpus ${env.REPLAY_CORPUS} has no ${request.type} exchange\n`);
      return exit(70, "corpus");
    }
    play(exchange, request.id);
  });
}
