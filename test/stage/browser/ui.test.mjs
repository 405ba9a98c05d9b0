// The Paperclip UI in a real browser (issue 13): Debian's Chromium, headless, driven by playwright-core, against
// the real Paperclip 2026.916.1 on 127.0.0.1 with the packed adapter; runs go to the real stage. Loopback only:
// the browser starts with every background network feature off and opens nothing but 127.0.0.1:3100.
//
// Run by `make test-browser` (test/stage/paperclip.sh test test/stage/browser/*.test.mjs). Screenshots are kept
// in target/browser/.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  BASE,
  REPO,
  agentConfig,
  api,
  createAgent,
  createCompany,
  followRun,
  installAdapter,
  invokeHeartbeat,
  kubectlJson,
  leftovers,
  sleep,
  stageFacts,
  startFakeApi,
  until,
} from "../paperclip/lib/stage.mjs";

const CACHE = process.env.CLAUDE_K8S_STAGE_CACHE ?? "/var/cache/claude-k8s-stage";
const PLAYWRIGHT = path.join(CACHE, "browser", "node_modules", "playwright-core", "index.mjs");
const SHOTS = path.join(REPO, "target", "browser");

// The two lines of Paperclip's parser-worker sandbox that throw in Chromium ("Cannot set property caches of
// #<WorkerGlobalScope> which has only a getter"): in strict mode, assigning a getter-only global throws.
const FAILING_LINES = ["self.caches = _undefined;", "self.indexedDB = _undefined;"];

const jobsOf = async (facts, agentId) => (await kubectlJson(facts, ["get", "jobs", "-l", `paperclip.io/agent-id=${agentId}`])).items;
const podsOf = async (facts, agentId) => (await kubectlJson(facts, ["get", "pods", "-l", `paperclip.io/agent-id=${agentId}`])).items;

/**
 * Records what the page's web workers report (an error while a worker starts, e.g. Paperclip's parser worker), and,
 * with `neutralise`, rewrites the two failing lines of that worker's source, and only those, into try/catch before
 * the worker is made from its Blob: everything else of Paperclip's worker code runs as shipped.
 */
function workerProbe({ neutralise, failing }) {
  window.__workerErrors = [];
  window.__neutralised = 0;
  const NativeWorker = window.Worker;
  window.Worker = function Worker(url, options) {
    const worker = new NativeWorker(url, options);
    worker.addEventListener("error", (e) => window.__workerErrors.push(e.message || String(e)));
    return worker;
  };
  window.Worker.prototype = NativeWorker.prototype;
  if (!neutralise) return;
  const NativeBlob = window.Blob;
  window.Blob = function Blob(parts, options) {
    if (Array.isArray(parts) && typeof parts[0] === "string" && failing.every((l) => parts[0].includes(l))) {
      let source = parts[0];
      for (const line of failing) source = source.replace(line, `try { ${line} } catch (_e) {}`);
      window.__neutralised += 1;
      parts = [source, ...parts.slice(1)];
    }
    return new NativeBlob(parts, options);
  };
  window.Blob.prototype = NativeBlob.prototype;
}

describe("the Paperclip UI in Chromium", { concurrency: false }, () => {
  let facts;
  let fake;
  let company;
  let browser;
  let chromium;

  before(async () => {
    facts = stageFacts();
    fake = await startFakeApi();
    await installAdapter();
    company = await createCompany(`claude-k8s browser ${Date.now()}`);
    ({ chromium } = await import(PLAYWRIGHT));
    browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    fs.mkdirSync(SHOTS, { recursive: true });
  });

  after(async () => {
    await fake?.release().catch(() => {});
    await browser?.close();
    fake?.stop();
  });

  async function newPage(probe = { neutralise: false }) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    // Nothing but the Paperclip under test is ever requested.
    await context.route((url) => !url.href.startsWith(BASE) && !url.protocol.startsWith("blob") && !url.protocol.startsWith("data"), (route) => route.abort());
    await context.addInitScript(workerProbe, { ...probe, failing: FAILING_LINES });
    return context.newPage();
  }

  const agentPage = (agent, tab) => `${BASE}/${company.issuePrefix}/agents/${agent.urlKey}/${tab}`;

  /** A screenshot of the page scrolled to the run's transcript (the page scrolls inside its main pane). */
  async function shotTranscript(page, name) {
    await page.getByText(/^Transcript \(\d+\)/).first().evaluate((el) => el.scrollIntoView({ block: "start" }));
    await sleep(300);
    await page.screenshot({ path: path.join(SHOTS, name) });
  }

  /** The input or textarea of the field labelled `label` on the configuration page. */
  const field = (page, label) =>
    page.locator("label", { hasText: new RegExp(`^${label.replace(/[()]/g, "\\$&")}$`) }).first().locator("xpath=../..").locator("input, textarea").first();

  it("the configuration page shows the adapter's fields from getConfigSchema() with their hints, and saved values reach the Job", async () => {
    const agent = await createAgent(
      company.id,
      "Browser config agent",
      agentConfig(facts, fake.url, { promptTemplate: "[[fake:text Configured from the browser]]" }),
    );
    const page = await newPage();
    try {
      await page.goto(agentPage(agent, "runtime"), { waitUntil: "networkidle" });
      await page.getByText("Namespace", { exact: true }).first().waitFor();
      // Open the collapsed sections ("Advanced"), one at a time (each click changes the set).
      const collapsed = page.locator('button[aria-expanded="false"]', { hasText: "Advanced" });
      for (let i = 0; i < 5 && (await collapsed.count()) > 0; i++) await collapsed.first().click();
      const schema = (await api("GET", "/adapters/claude_k8s/config-schema", undefined, { expect: 200 })).json;
      assert.ok(schema.fields.length >= 25, `${schema.fields.length} fields`);
      const missing = [];
      for (const f of schema.fields) {
        if ((await page.getByText(f.label, { exact: true }).count()) === 0) missing.push(f.label);
      }
      assert.deepEqual(missing, [], "every schema field has its labelled control");
      // Each field's (?) shows its hint from the schema.
      for (const key of ["namespace", "labels", "resources.requests.cpu", "podSpecPatch", "retainJobs"]) {
        const f = schema.fields.find((x) => x.key === key);
        // Its (?) follows the field's caption: a <label> for inputs, a <span> for toggles (retainJobs).
        const trigger = page
          .getByText(f.label, { exact: true })
          .locator('xpath=following-sibling::button[@data-slot="tooltip-trigger"]')
          .first();
        // Radix's tooltip: the visible bubble (its role=tooltip copy is visually hidden). It opens on a pointer move
        // over the trigger and closes on a scroll of the pane that holds it: the scroll of the hover into view can
        // close it as it opens, so the trigger is scrolled to first, and hovered again (from elsewhere) if no
        // bubble shows.
        const tip = page.locator('[data-slot="tooltip-content"]:visible');
        await trigger.scrollIntoViewIfNeeded();
        let shown = false;
        for (let attempt = 0; attempt < 3 && !shown; attempt++) {
          await page.mouse.move(0, 0);
          await trigger.hover();
          shown = await tip
            .first()
            .waitFor({ timeout: 10_000 })
            .then(() => true)
            .catch(() => false);
        }
        if (!shown) {
          await page.screenshot({ path: path.join(SHOTS, `hint-${key}-missing.png`), fullPage: true });
          assert.fail(`the hint of ${key} did not show on hovering its (?) three times (target/browser/hint-${key}-missing.png)`);
        }
        assert.ok((await tip.first().innerText()).includes(f.hint), `the hint of ${key}: ${await tip.first().innerText()}`);
        await page.mouse.move(0, 0);
        await page.locator('[data-slot="tooltip-content"]').first().waitFor({ state: "detached" }).catch(() => {});
      }
      await page.screenshot({ path: path.join(SHOTS, "agent-configuration.png"), fullPage: true });

      // Values typed into the form and saved are the agent's config, and the run's Job has them.
      await field(page, "Extra Job labels").fill("ui-test=from-browser");
      await field(page, "CPU request").fill("150m");
      await page.getByRole("button", { name: "Save changes" }).click();
      const saved = await until("the saved config", async () => {
        const a = (await api("GET", `/agents/${agent.id}`, undefined, { expect: 200 })).json;
        return a.adapterConfig.labels === "ui-test=from-browser" && a.adapterConfig["resources.requests.cpu"] === "150m" && a;
      }, 30_000);
      assert.equal(saved.adapterType, "claude_k8s");

      await fake.hold();
      const runId = await invokeHeartbeat(agent.id);
      const [job] = await until("the run's Job", async () => {
        const jobs = await jobsOf(facts, agent.id);
        return jobs.length > 0 && jobs;
      });
      assert.equal(job.metadata.labels["ui-test"], "from-browser");
      const claude = job.spec.template.spec.containers.find((c) => c.name === "claude");
      assert.equal(claude.resources.requests.cpu, "150m");
      await fake.release();
      const run = await followRun(runId);
      assert.equal(run.status, "succeeded", run.error ?? "");
      assert.deepEqual(await leftovers(facts, agent.id), []);
    } finally {
      await fake.release().catch(() => {});
      await page.context().close();
      await api("POST", `/agents/${agent.id}/pause`, {}).catch(() => {});
    }
  });

  let finished;

  it("a run's page shows its transcript lines live while the pod runs", async () => {
    const agent = await createAgent(
      company.id,
      "Browser live agent",
      agentConfig(facts, fake.url, { graceSec: 2, promptTemplate: "Report. [[fake:hold Watching the pod from the browser]]" }),
    );
    const page = await newPage();
    try {
      const runId = await invokeHeartbeat(agent.id);
      await page.goto(agentPage(agent, `runs/${runId}`), { waitUntil: "domcontentloaded" });
      // Lines that only exist once the pod runs: the adapter's progress line and claude's own init line.
      let log = "";
      await until(`run ${runId} logs claude's init line`, async () => {
        log = (await api("GET", `/heartbeat-runs/${runId}/log?offset=0&limitBytes=1048576`)).json?.content ?? "";
        return log.includes('\\"subtype\\":\\"init\\"');
      }).catch((err) => {
        throw new Error(`${err.message}; its log:\n${log.slice(-3000)}`);
      });
      await page.getByText(/claude running on node localhost/).first().waitFor({ timeout: 30_000 });
      await page.getByText(/"subtype":\s*"init"/).first().waitFor({ timeout: 30_000 });
      // ...seen while the run is still running and its pod is Running (the model stream is held).
      const run = (await api("GET", `/heartbeat-runs/${runId}`, undefined, { expect: 200 })).json;
      assert.equal(run.status, "running");
      const pods = await podsOf(facts, agent.id);
      assert.equal(pods[0]?.status?.phase, "Running");
      await shotTranscript(page, "run-live.png");
      await fake.release();
      finished = { agent, run: await followRun(runId) };
      assert.equal(finished.run.status, "succeeded", finished.run.error ?? "");
      await page.getByText(/Watching the pod from the browser/).first().waitFor({ timeout: 30_000 });
      assert.deepEqual(await leftovers(facts, agent.id), []);
    } finally {
      await fake.release().catch(() => {});
      await page.context().close();
      await api("POST", `/agents/${agent.id}/pause`, {}).catch(() => {});
    }
  });

  it("the Nice view: Paperclip's parser worker throws in Chromium before loading ours; with its two failing lines neutralised, its own worker renders our parser's entries", async () => {
    assert.ok(finished, "needs the finished run of the live test");
    const url = agentPage(finished.agent, `runs/${finished.run.id}`);
    const assistant = /Watching the pod from the browser/;

    // As released: the worker dies on its sandbox's first line, so the transcript is raw stream-json.
    const plain = await newPage();
    try {
      await plain.goto(url, { waitUntil: "networkidle" });
      await plain.getByText(assistant).first().waitFor();
      const errors = await until(
        "the worker's error",
        async () => {
          const seen = await plain.evaluate(() => window.__workerErrors.slice());
          return seen.length > 0 && seen;
        },
        30_000,
      );
      assert.match(errors.join("\n"), /Cannot set property caches of #<WorkerGlobalScope> which has only a getter/);
      assert.ok((await plain.getByText(/"type":\s*"assistant"/).count()) > 0, "raw stream-json lines in the Nice view");
      await shotTranscript(plain, "run-nice-view-as-released.png");
    } finally {
      await plain.context().close();
    }

    // The same page with only those two lines wrapped in try/catch: Paperclip's worker loads our ui-parser.js and
    // the Nice view shows its entries (the assistant's words as text, no raw JSON line).
    const fixed = await newPage({ neutralise: true });
    try {
      await fixed.goto(url, { waitUntil: "networkidle" });
      await fixed.getByText(assistant).first().waitFor();
      await until("the parsed transcript", async () => (await fixed.getByText(/"type":\s*"assistant"/).count()) === 0, 30_000);
      assert.equal(await fixed.evaluate(() => window.__neutralised), 1, "Paperclip's worker source had exactly the two failing lines");
      assert.deepEqual(await fixed.evaluate(() => window.__workerErrors), []);
      assert.equal(await fixed.getByText(/"subtype":\s*"init"/).count(), 0, "the init line is parsed, not shown raw");
      await shotTranscript(fixed, "run-nice-view.png");
    } finally {
      await fixed.context().close();
    }
  });
});
