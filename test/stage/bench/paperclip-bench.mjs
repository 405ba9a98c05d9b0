// `make bench`, the part through Paperclip (issue 15): heartbeats of a claude_k8s agent in the real Paperclip on
// this machine (test/stage/paperclip.sh), each one real Claude Code run in a Job on the stage against the project's
// fake Messages API, timed only with clocks outside the adapter (all on this machine):
//
//   start       the heartbeat invoke request sent (this script's clock) -> the fake API receives the run's first
//               request; also from Paperclip's run record creation (`createdAt`)
//   log         the fake API has sent a reply's last byte (`replied_at_unix_ms`) -> the reply's stream-json
//               `assistant` line (matched by its message id) in Paperclip's run log: the record's `ts`, which
//               Paperclip stamps when the adapter hands it the chunk (ms); also when this script's polling first
//               sees it (every POLL_MS)
//   completion  the run's last reply complete at the fake API -> Paperclip's `finishedAt` of the run
//
//   node paperclip-bench.mjs install        install the packed adapter unless Paperclip has this very tarball, and
//                                           reload it (the shim is one bundled file, so the reload runs it whole)
//   node paperclip-bench.mjs measure OUT    the heartbeats, figures written to OUT (JSON; report.rs renders it)
//
// BENCH_QUICK=1: a smoke (2 runs per length, shorter tool calls). BENCH_RUNS, BENCH_SLEEPS ("6,56": the seconds of
// each length's one Bash tool call, `waitCommand`) override. Needs the stage, the running Paperclip with the stage's environment
// (run-bench.sh), `make package` and `cargo build -p fake-anthropic`.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import {
  REPO,
  agentConfig,
  api,
  createAgent,
  createCompany,
  installAdapter,
  invokeHeartbeat,
  leftovers,
  sleep,
  stageFacts,
  startFakeApi,
} from "../paperclip/lib/stage.mjs";

const QUICK = process.env.BENCH_QUICK === "1";
const RUNS = Number(process.env.BENCH_RUNS ?? (QUICK ? 2 : 8));
const SLEEPS = (process.env.BENCH_SLEEPS ?? (QUICK ? "1,8" : "6,56")).split(",").map(Number);
/** How often the bench reads the run's log and record while it runs (the resolution of the "seen" figures). */
const POLL_MS = 250;
/** Paperclip's largest log read (RUN_LOG_MAX_LIMIT_BYTES of its server). */
const LOG_READ_BYTES = 1024 * 1024;
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

/**
 * A Bash command that takes `seconds` and prints nothing. Claude Code 2.1.328 refuses a command that begins with
 * `sleep N` for N of 25 or more ("Blocked: standalone sleep 56", telling the model to use Monitor or a background
 * command instead), so the sleep runs under `timeout` (busybox's in the agent image), which lets it finish.
 */
const waitCommand = (seconds) => `timeout ${seconds + 60} sleep ${seconds}`;

const say = (msg) => console.error(`[paperclip-bench] ${msg}`);

/** p50/p95/max as report.rs computes them (nearest rank, rounded to ms), or `{n: 0}`. */
export function stats(samples) {
  const v = [...samples].sort((a, b) => a - b);
  if (v.length === 0) return { n: 0 };
  const pick = (q) => v[Math.round((v.length - 1) * q)];
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return { n: v.length, p50: r3(pick(0.5)), p95: r3(pick(0.95)), max: r3(v[v.length - 1]) };
}

/**
 * Paperclip's log records (`{ts, stream, chunk}`, chunks cut anywhere) as whole stdout lines, each with the time of
 * the record that completed it: `time(record)` decides which clock that is.
 */
export class LineAssembler {
  constructor(time) {
    this.time = time;
    this.pending = "";
  }

  feed(record) {
    if (record.stream !== "stdout") return [];
    this.pending += record.chunk;
    const lines = this.pending.split("\n");
    this.pending = lines.pop();
    const at = this.time(record);
    return lines.map((line) => ({ line, at }));
  }
}

/** The message id of a stream-json `assistant` line, else null. */
export function assistantMessageId(line) {
  if (!line.startsWith("{")) return null;
  try {
    const event = JSON.parse(line);
    return event.type === "assistant" ? (event.message?.id ?? null) : null;
  } catch {
    return null;
  }
}

/** NDJSON records of a log read, and the bytes of whole records consumed. */
function records(content) {
  const whole = content.slice(0, content.lastIndexOf("\n") + 1);
  const out = [];
  for (const line of whole.split("\n").filter(Boolean)) {
    try {
      out.push(JSON.parse(line));
    } catch {
      throw new Error(`Paperclip's run log has a record that is not JSON: ${line.slice(0, 200)}`);
    }
  }
  return { records: out, bytes: Buffer.byteLength(whole) };
}

/** Every record of a run's log, read from the start in reads of at most Paperclip's 1 MiB. */
async function wholeLog(runId) {
  const all = [];
  for (let offset = 0; ; ) {
    const log = await api("GET", `/heartbeat-runs/${runId}/log?offset=${offset}&limitBytes=${LOG_READ_BYTES}`, undefined, {
      expect: 200,
    });
    const read = records(log.json?.content ?? "");
    if (read.bytes === 0) return all;
    all.push(...read.records);
    offset += read.bytes;
  }
}

/** Every request the fake API recorded (all paths), with its reply time and message id. */
async function fakeRequests(fake) {
  const res = await fetch(`${fake.url}/_fake/requests`);
  if (!res.ok) throw new Error(`fake API /_fake/requests answered ${res.status}`);
  return res.json();
}

/**
 * One heartbeat, followed to its end: polls the run's log and record every POLL_MS, then reads the whole log once
 * more and takes the fake API's requests of the run (runs are one at a time, so every request after the previous
 * run's are this run's).
 */
async function heartbeat(agent, fake, timeoutMs) {
  const seqBefore = (await fakeRequests(fake)).at(-1)?.seq ?? 0;
  const invokedAt = Date.now();
  const runId = await invokeHeartbeat(agent.id);
  const invokeAnsweredAt = Date.now();

  const seen = new Map(); // message id -> when this script's poll first had its whole line
  let offset = 0;
  let polledAt = 0;
  const polled = new LineAssembler(() => polledAt);
  const deadline = Date.now() + timeoutMs;
  let run;
  for (;;) {
    const log = await api("GET", `/heartbeat-runs/${runId}/log?offset=${offset}&limitBytes=${LOG_READ_BYTES}`);
    polledAt = Date.now();
    if (log.status === 200 && log.json?.content) {
      const read = records(log.json.content);
      offset += read.bytes;
      for (const record of read.records) {
        for (const { line, at } of polled.feed(record)) {
          const id = assistantMessageId(line);
          if (id && !seen.has(id)) seen.set(id, at);
        }
      }
    }
    run = (await api("GET", `/heartbeat-runs/${runId}`, undefined, { expect: 200 })).json;
    if (TERMINAL.has(run.status)) break;
    if (Date.now() > deadline) throw new Error(`run ${runId} still ${run.status} after ${timeoutMs / 1000} s`);
    await sleep(POLL_MS);
  }

  // The whole log, from the start: Paperclip's own times for every line.
  const logged = new Map(); // message id -> ts of the record that completed its last assistant line
  const stamped = new LineAssembler((record) => Date.parse(record.ts));
  let stdout = "";
  for (const record of await wholeLog(runId)) {
    if (record.stream === "stdout") stdout += record.chunk;
    for (const { line, at } of stamped.feed(record)) {
      const id = assistantMessageId(line);
      if (id) logged.set(id, at);
    }
  }
  if (run.status !== "succeeded") {
    throw new Error(`run ${runId} ended ${run.status}: ${run.error ?? ""}\n${stdout.slice(-4000)}`);
  }
  const requests = (await fakeRequests(fake)).filter((r) => r.seq > seqBefore);
  if (!requests.some((r) => JSON.stringify(r.body ?? "").includes(runId))) {
    throw new Error(`no request the fake API received since the invoke carries run ${runId}: another client?`);
  }
  return { runId, invokedAt, invokeAnsweredAt, run, requests, logged, seen };
}

/** The figures of one heartbeat, in seconds. */
function figures(h) {
  const first = h.requests[0];
  const replies = h.requests.filter((r) => r.message_id && r.replied_at_unix_ms != null);
  if (!first || replies.length === 0) throw new Error(`run ${h.runId}: the fake API got no complete reply`);
  const lastReply = Math.max(...h.requests.map((r) => r.replied_at_unix_ms ?? 0));
  const created = Date.parse(h.run.createdAt);
  const finished = Date.parse(h.run.finishedAt);
  const perReply = replies.map((r) => {
    const logged = h.logged.get(r.message_id);
    if (logged === undefined) throw new Error(`run ${h.runId}: reply ${r.message_id} has no line in Paperclip's run log`);
    return {
      message_id: r.message_id,
      replied_at_unix_ms: r.replied_at_unix_ms,
      log_record_s: (logged - r.replied_at_unix_ms) / 1000,
      log_seen_s: h.seen.has(r.message_id) ? (h.seen.get(r.message_id) - r.replied_at_unix_ms) / 1000 : null,
    };
  });
  return {
    run_id: h.runId,
    invoked_at_unix_ms: h.invokedAt,
    invoke_answered_s: (h.invokeAnsweredAt - h.invokedAt) / 1000,
    created_at: h.run.createdAt,
    started_at: h.run.startedAt ?? null,
    finished_at: h.run.finishedAt,
    first_request: { path: first.path, received_at_unix_ms: first.received_at_unix_ms },
    requests: h.requests.length,
    start_from_invoke_s: (first.received_at_unix_ms - h.invokedAt) / 1000,
    start_from_run_created_s: (first.received_at_unix_ms - created) / 1000,
    replies: perReply,
    completion_s: (finished - lastReply) / 1000,
    run_seconds: (finished - created) / 1000,
  };
}

function summary(sleepSeconds, runs) {
  const all = (key) => runs.map((r) => r[key]);
  const replies = runs.flatMap((r) => r.replies);
  return {
    bash_sleep_s: sleepSeconds,
    heartbeats: runs.length,
    run_seconds: stats(all("run_seconds")),
    start_from_invoke_s: stats(all("start_from_invoke_s")),
    start_from_run_created_s: stats(all("start_from_run_created_s")),
    log_record_s: stats(replies.map((r) => r.log_record_s)),
    log_seen_s: stats(replies.map((r) => r.log_seen_s).filter((v) => v !== null)),
    completion_s: stats(all("completion_s")),
    first_request_paths: [...new Set(runs.map((r) => r.first_request.path))],
    runs,
  };
}

function git(args) {
  try {
    return execFileSync("git", args, { cwd: REPO, encoding: "utf8" }).trim();
  } catch {
    return "";
  }
}

async function measure(out) {
  const facts = stageFacts();
  const fake = await startFakeApi();
  const load = [os.loadavg()[0]];
  try {
    const info = await api("GET", "/adapters/claude_k8s", undefined, { expect: 200 });
    if (!info.json?.loaded) throw new Error(`claude_k8s is not loaded in Paperclip: ${JSON.stringify(info.json)}`);
    const health = (await api("GET", "/health", undefined, { expect: 200 })).json;
    const company = await createCompany(`claude-k8s bench ${new Date().toISOString()}`);
    const lengths = [];
    for (const seconds of SLEEPS) {
      // One agent per length, its heartbeats resuming its session as a real agent's do; a warm-up heartbeat first
      // (the agent's first: workspace and session created) that is not counted.
      const agent = await createAgent(
        company.id,
        `Bench ${seconds}s tool call`,
        agentConfig(facts, fake.url, {
          promptTemplate: `Bench heartbeat {{run.id}}. [[fake:bash ${waitCommand(seconds)}]] [[fake:text Waited ${seconds} s.]]`,
        }),
      );
      const timeoutMs = (seconds + 180) * 1000;
      const runs = [];
      try {
        for (let i = 0; i <= RUNS; i++) {
          const f = figures(await heartbeat(agent, fake, timeoutMs));
          if (f.run_seconds < seconds) {
            throw new Error(`run ${f.run_id} took ${f.run_seconds} s, less than its ${seconds} s tool call: did it run?`);
          }
          const left = await leftovers(facts, agent.id);
          if (left.length > 0) throw new Error(`run ${f.run_id} left ${left.join(", ")} after 60 s`);
          say(
            `${seconds}s tool call, ${i === 0 ? "warm-up" : `run ${i}/${RUNS}`}: ${f.run_seconds.toFixed(1)} s, start ` +
              `${f.start_from_invoke_s.toFixed(3)} s, log ${f.replies.map((r) => r.log_record_s.toFixed(3)).join("/")} s, ` +
              `completion ${f.completion_s.toFixed(3)} s`,
          );
          if (i > 0) runs.push(f);
          // Heartbeats of a real agent are apart: let the cleanup after the result settle first.
          await sleep(1000);
        }
      } finally {
        await api("POST", `/agents/${agent.id}/pause`, {}).catch(() => {});
      }
      lengths.push(summary(seconds, runs));
      load.push(os.loadavg()[0]);
    }
    const results = {
      date: new Date().toISOString(),
      commit: git(["rev-parse", "--short", "HEAD"]),
      dirty: git(["status", "--porcelain"]) !== "",
      quick: QUICK,
      machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`,
      load_average_1m: load.map((l) => Math.round(l * 100) / 100),
      paperclip: health?.version ?? null,
      adapter: info.json.version ?? null,
      kubernetes: facts.K8S_VERSION,
      claude: facts.CLAUDE_VERSION,
      poll_ms: POLL_MS,
      runs_per_length: RUNS,
      lengths,
    };
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
    say(`wrote ${out}`);
  } finally {
    fake.stop();
  }
}

async function main() {
  const [command, out] = process.argv.slice(2);
  if (command === "install") {
    await installAdapter();
  } else if (command === "measure" && out) {
    await measure(path.resolve(out));
  } else {
    console.error("usage: paperclip-bench.mjs install | measure OUT.json");
    process.exit(2);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(`[paperclip-bench] failed: ${err.stack ?? err}`);
    process.exit(1);
  });
}
