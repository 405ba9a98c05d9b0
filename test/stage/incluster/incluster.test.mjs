// Paperclip itself in the cluster (issue 13): deploy/ applied on the stage with test/stage/incluster/ (the stage's
// overlay), the real Paperclip 2026.916.1 running in the Deployment's pod with the adapter from its image. It is
// driven here only through its REST API, as a user would. The adapter in it has no kubeconfig and no
// CLAUDE_K8S_SELF_POD: it talks to the API server with the pod's service account and reads its own pod.
//
// Run by test/stage/incluster.sh test (make test-incluster), which builds the images and applies the overlay.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  api,
  createAgent,
  createCompany,
  followRun,
  invokeHeartbeat,
  kubectl,
  kubectlJson as getJson,
  leftovers,
  stageFacts,
  startFakeApi,
  until,
  version,
} from "../paperclip/lib/stage.mjs";

// The overlay gives the Deployment ANTHROPIC_BASE_URL=http://127.0.0.1:18431; the Jobs inherit it.
const FAKE_LISTEN = "127.0.0.1:18431";
const IMAGE = "local/paperclip-claude-k8s:stage";
const SERVER = "app.kubernetes.io/name=paperclip,app.kubernetes.io/component=server";

/** The Paperclip server pod of the Deployment (the one not being deleted). */
async function serverPod(facts) {
  const pods = (await getJson(facts, ["get", "pods", "-l", SERVER])).items.filter((p) => !p.metadata.deletionTimestamp);
  assert.equal(pods.length, 1, `one Paperclip pod: ${pods.map((p) => p.metadata.name)}`);
  return pods[0];
}

/** The agent's Jobs (as admin). */
async function jobsOf(facts, agentId) {
  return (await getJson(facts, ["get", "jobs", "-l", `paperclip.io/agent-id=${agentId}`])).items;
}

/**
 * What an agent's config must say on this stage, and nothing more: the local init image, host networking for the
 * Job pod (the fake API and Paperclip listen on 127.0.0.1) and small requests. No image, kubeconfig, API URL or
 * model URL: those come from the Deployment's pod.
 */
function agentConfig(facts, extra = {}) {
  return {
    initImage: facts.BUSYBOX_IMAGE,
    "resources.requests.cpu": "100m",
    "resources.requests.memory": "128Mi",
    "resources.limits.memory": "2Gi",
    podSpecPatch: JSON.stringify({ hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet" }),
    timeoutSec: 300,
    env: { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", CLAUDE_CODE_MAX_RETRIES: "1" },
    ...extra,
  };
}

/** The API server's audit records (metadata only) of `user`, from the stage's audit log. */
function auditOf(facts, user) {
  return fs
    .readFileSync(facts.AUDIT_LOG, "utf8")
    .split("\n")
    .filter((l) => l.includes(user))
    .map((l) => JSON.parse(l))
    .filter((e) => e.user?.username === user);
}

describe("Paperclip in the cluster: deploy/ on the stage", { concurrency: false }, () => {
  let facts;
  let fake;
  let company;
  let agent;
  let firstRun;

  before(async () => {
    facts = stageFacts();
    fake = await startFakeApi(FAKE_LISTEN);
    company = await createCompany(`claude-k8s in-cluster ${Date.now()}`);
  });

  after(async () => {
    await fake?.release().catch(() => {});
    fake?.stop();
  });

  it("runs in the Deployment's pod, with its service account, and the adapter from its image is installed", async () => {
    const pod = await serverPod(facts);
    assert.equal(pod.spec.serviceAccountName, "paperclip");
    const container = pod.spec.containers.find((c) => c.name === "paperclip");
    assert.equal(container.image, IMAGE);
    const names = (container.env ?? []).map((e) => e.name);
    for (const absent of ["KUBECONFIG", "CLAUDE_K8S_SELF_POD"]) {
      assert.ok(!names.includes(absent), `the server has no ${absent}`);
    }
    const policyFile = (container.env ?? []).find((e) => e.name === "CLAUDE_K8S_POLICY_FILE")?.value;
    assert.equal(policyFile, "/etc/claude-k8s/policy.yaml", "the operator policy's file, as deploy/ sets it");
    const policyVolume = pod.spec.volumes.find((v) => v.name === "policy");
    assert.match(policyVolume?.configMap?.name ?? "", /^claude-k8s-policy-/, JSON.stringify(policyVolume));
    const policyMap = await getJson(facts, ["get", "configmap", policyVolume.configMap.name]);
    assert.equal(
      policyMap.data["policy.yaml"],
      fs.readFileSync(path.join(process.env.REPO_ROOT, "test/stage/policy.yaml"), "utf8"),
      "the stage's policy replaces deploy/policy.yaml",
    );
    const init = pod.status.initContainerStatuses.find((c) => c.name === "register-adapter");
    assert.equal(init.state.terminated?.exitCode, 0, JSON.stringify(init.state));
    const initLog = await kubectl(facts, ["logs", pod.metadata.name, "-c", "register-adapter"]);
    assert.match(initLog, new RegExp(`claude_k8s ${version.replace(/\./g, "\\.")} \\(claude-k8s ${version}\\) from /opt/paperclip-adapter-claude-k8s registered`));

    const adapter = await api("GET", "/adapters/claude_k8s", undefined, { expect: 200 });
    assert.equal(adapter.json.loaded, true, adapter.text);
    assert.equal(adapter.json.source, "external");
    assert.equal(adapter.json.version, version);
    assert.equal(adapter.json.packageName, "/opt/paperclip-adapter-claude-k8s");
    const listed = (await api("GET", "/adapters", undefined, { expect: 200 })).json;
    assert.ok(listed.some((a) => a.type === "claude_k8s" && a.loaded), "GET /api/adapters lists claude_k8s as loaded");
  });

  it("the operator policy mounted from its ConfigMap is in force: a config that widens beyond it is refused, nothing created", async () => {
    const hostile = await createAgent(
      company.id,
      "In-cluster hostile agent",
      agentConfig(facts, { podSpecPatch: JSON.stringify({ hostNetwork: true, hostPID: true, dnsPolicy: "ClusterFirstWithHostNet" }) }),
    );
    try {
      const run = await followRun(await invokeHeartbeat(hostile.id));
      assert.equal(run.status, "failed");
      assert.equal(run.errorCode, "policy_denied", JSON.stringify(run).slice(0, 1000));
      assert.match(run.error ?? "", /hostPID/);
      assert.match(run.error ?? "", /\/etc\/claude-k8s\/policy\.yaml/, "the refusal names the operator's file");
      assert.deepEqual(await jobsOf(facts, hostile.id), [], "no Job was created");
    } finally {
      await api("POST", `/agents/${hostile.id}/pause`, {}).catch(() => {});
    }
  });

  it("a heartbeat runs as a Job made with the pod's own account; the Job inherits the Deployment's image, env and claim", async () => {
    agent = await createAgent(
      company.id,
      "In-cluster agent",
      agentConfig(facts, { promptTemplate: "You are agent {{agent.id}}. [[fake:text In-cluster heartbeat {{run.id}} done]]" }),
    );
    const server = await serverPod(facts);
    // Every model stream stops after its first block until released: the Job can be looked at while it runs.
    await fake.hold();
    const runId = await invokeHeartbeat(agent.id);
    await until("claude talks to the model from the Job's pod", async () => (await fake.health()).held_streams > 0);
    const [job] = await jobsOf(facts, agent.id);
    assert.ok(job, "the run's Job exists");
    const spec = job.spec.template.spec;
    const claude = spec.containers.find((c) => c.name === "claude");
    assert.equal(claude.image, IMAGE, "the Deployment's image");
    const env = Object.fromEntries((claude.env ?? []).map((e) => [e.name, e]));
    assert.deepEqual(env.ANTHROPIC_API_KEY?.valueFrom, { secretKeyRef: { name: "paperclip-secrets", key: "ANTHROPIC_API_KEY" } });
    assert.equal(env.ANTHROPIC_BASE_URL?.value, `http://${FAKE_LISTEN}`, "the Deployment's literal env");
    assert.equal(env.PAPERCLIP_API_URL?.value, "http://127.0.0.1:3100");
    assert.ok(!env.KUBERNETES_SERVICE_HOST || env.KUBERNETES_SERVICE_HOST.value === "127.0.0.1");
    assert.equal(env.PAPERCLIP_API_KEY?.valueFrom?.secretKeyRef?.key !== undefined, true, "the run token as a secretKeyRef");
    const data = spec.volumes.find((v) => v.persistentVolumeClaim?.claimName === "paperclip-data");
    assert.ok(data, "the Deployment's claim");
    // The claim as the per-run view of the volume (issue 14): subPaths of it at their own paths, never the whole
    // volume at /paperclip; HOME is the agent's own Claude home on it.
    const onClaim = claude.volumeMounts.filter((m) => m.name === data.name);
    assert.ok(onClaim.length > 0, JSON.stringify(claude.volumeMounts));
    for (const m of onClaim) assert.equal(m.mountPath, `/paperclip/${m.subPath}`, JSON.stringify(m));
    assert.match(env.HOME?.value ?? "", new RegExp(`^/paperclip/.*/claude-k8s-homes/${agent.id}$`), JSON.stringify(env.HOME));
    assert.ok(onClaim.some((m) => m.mountPath === env.HOME.value && !m.readOnly), "the home is a writable mount of the claim");
    assert.notEqual(spec.serviceAccountName, "paperclip", "the Job does not get the server's account");
    assert.equal(spec.automountServiceAccountToken, false);

    // The API server saw the server pod's own account read that pod (self-introspection) and create the Job.
    const sa = "system:serviceaccount:paperclip:paperclip";
    const audit = auditOf(facts, sa);
    assert.ok(
      audit.some((e) => e.verb === "get" && e.objectRef?.resource === "pods" && e.objectRef?.name === server.metadata.name && !e.objectRef?.subresource),
      `${sa} read its own pod ${server.metadata.name}`,
    );
    assert.ok(
      audit.some((e) => e.verb === "create" && e.objectRef?.resource === "jobs" && e.responseStatus?.code === 201),
      `${sa} created the Job`,
    );

    await fake.release();
    const records = [];
    const run = await followRun(runId, { onLogRecord: (r) => records.push(r) });
    const log = records.map((r) => r.chunk).join("");
    assert.equal(run.status, "succeeded", `run ${runId}: ${run.error ?? ""}\n${log}`);
    assert.match(log, /"subtype":"init"/);
    assert.ok(run.sessionIdAfter, "the session is recorded");
    assert.ok(run.usageJson?.outputTokens > 0, JSON.stringify(run.usageJson));
    assert.deepEqual(await leftovers(facts, agent.id), [], "no Job, pod or Lease is left");
    firstRun = run;
  });

  it("the next heartbeat resumes the session from the shared volume", async () => {
    assert.ok(firstRun, "needs the first heartbeat");
    const runId = await invokeHeartbeat(agent.id);
    const run = await followRun(runId);
    assert.equal(run.status, "succeeded", `run ${runId}: ${run.error ?? ""}`);
    assert.equal(run.sessionIdBefore, firstRun.sessionIdAfter);
    assert.equal(run.sessionIdAfter, firstRun.sessionIdAfter, "the same Claude session continued");
    assert.deepEqual(await leftovers(facts, agent.id), []);
    await api("POST", `/agents/${agent.id}/pause`, {});
  });

  it("a cancel from Paperclip stops the Job, is acknowledged, and nothing is left", async () => {
    const held = await createAgent(
      company.id,
      "In-cluster cancel agent",
      agentConfig(facts, { graceSec: 2, promptTemplate: "Hold on. [[fake:hold Working on it]]" }),
    );
    try {
      const runId = await invokeHeartbeat(held.id);
      await until("the run's log shows claude's init line", async () => {
        const log = await api("GET", `/heartbeat-runs/${runId}/log?offset=0&limitBytes=1048576`);
        return (log.json?.content ?? "").includes('\\"subtype\\":\\"init\\"');
      });
      const cancel = await api("POST", `/heartbeat-runs/${runId}/cancel`, {});
      assert.equal(cancel.status, 200, cancel.text);
      const run = await followRun(runId);
      assert.equal(run.status, "cancelled");
      assert.equal(run.resultJson?.executionCancellation?.state, "acknowledged", JSON.stringify(run.resultJson));
      assert.deepEqual(await leftovers(facts, held.id), []);
    } finally {
      await api("POST", `/agents/${held.id}/pause`, {}).catch(() => {});
    }
  });

  it("the Paperclip pod is deleted mid-run: the Job runs on, the new pod's server adopts it, and its result is recorded once", async () => {
    const requestsBefore = (await fake.requests()).length;
    const restarted = await createAgent(
      company.id,
      "In-cluster restart agent",
      agentConfig(facts, { promptTemplate: "Keep going. [[fake:hold Still working after the restart]]" }),
    );
    try {
      const oldPod = await serverPod(facts);
      const first = await invokeHeartbeat(restarted.id);
      await until("claude talks to the model", async () => (await fake.health()).held_streams > 0);
      const [job] = await jobsOf(facts, restarted.id);
      const jobPods = (await getJson(facts, ["get", "pods", "-l", `job-name=${job.metadata.name}`])).items;
      assert.equal(jobPods.length, 1);

      // A real restart: the pod is deleted (SIGTERM, Paperclip shuts down), the Deployment makes a new one.
      await kubectl(facts, ["delete", "pod", oldPod.metadata.name, "--wait=true"]);
      await kubectl(facts, ["rollout", "status", "deployment/paperclip", "--timeout=300s"]);
      const newPod = await serverPod(facts);
      assert.notEqual(newPod.metadata.uid, oldPod.metadata.uid, "a new Paperclip pod");
      await until("the new server answers", async () => (await api("GET", "/health").catch(() => ({}))).status === 200);

      // The Job and its claude outlived the server.
      const [still] = await jobsOf(facts, restarted.id);
      assert.equal(still?.metadata.uid, job.metadata.uid, "the same Job still runs");
      const podsNow = (await getJson(facts, ["get", "pods", "-l", `job-name=${job.metadata.name}`])).items;
      assert.deepEqual(podsNow.map((p) => p.metadata.uid), jobPods.map((p) => p.metadata.uid), "the same pod");
      const interrupted = (await api("GET", `/heartbeat-runs/${first}`, undefined, { expect: 200 })).json;
      assert.ok(["interrupted", "failed"].includes(interrupted.status), `the first run ended with its server: ${interrupted.status}`);

      // The next heartbeat of the agent (same task and session) is served by the new pod's adapter: it adopts the
      // running Job instead of starting another claude.
      const second = await invokeHeartbeat(restarted.id);
      await until("the new server follows the adopted Job", async () => {
        const log = await api("GET", `/heartbeat-runs/${second}/log?offset=0&limitBytes=1048576`);
        return (log.json?.content ?? "").includes(job.metadata.name);
      });
      await fake.release();
      const records = [];
      const run = await followRun(second, { onLogRecord: (r) => records.push(r) });
      const stdout = records.filter((r) => r.stream === "stdout").map((r) => r.chunk).join("");
      assert.equal(run.status, "succeeded", `run ${second}: ${run.error ?? ""}\n${stdout}`);
      const lines = stdout.split("\n").filter((l) => l.startsWith("{"));
      assert.equal(lines.filter((l) => l.includes('"subtype":"init"')).length, 1, "the transcript from its first line, once");
      assert.equal(lines.filter((l) => l.includes('"type":"result"')).length, 1, "one result");
      assert.ok(run.usageJson?.outputTokens > 0, "the result is recorded on the adopting run");
      // Recorded once: the first run has none of it, and only one claude ever talked to the model.
      const firstNow = (await api("GET", `/heartbeat-runs/${first}`, undefined, { expect: 200 })).json;
      assert.ok(!firstNow.sessionIdAfter && !(firstNow.usageJson?.outputTokens > 0), JSON.stringify(firstNow));
      const requests = (await fake.requests()).slice(requestsBefore);
      const processes = new Set(requests.map((r) => r.headers?.["x-claude-code-session-id"]).filter(Boolean));
      assert.equal(processes.size, 1, "claude was started once");
      assert.deepEqual(await leftovers(facts, restarted.id), [], "no Job, pod or Lease is left");
    } finally {
      await fake?.release().catch(() => {});
      await api("POST", `/agents/${restarted.id}/pause`, {}).catch(() => {});
    }
  });
});

