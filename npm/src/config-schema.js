// The agent configuration: the declarative form (`getConfigSchema()`) and the markdown reference
// (`agentConfigurationDoc`), both from the one field table below. Pure.
//
// The Paperclip UI stores schema values flat, so nested settings are flat dotted keys (`resources.requests.cpu`);
// the binary accepts both that and the nested form. On agent creation the UI writes every field's default into
// the config (a toggle without a default becomes `false`, a number `0`, a select its first option), so every
// toggle, number and select here carries the default the binary applies anyway.
//
// `env` is deliberately not a schema field: Paperclip renders its own environment-variable editor (with secret
// references) for this adapter, and the server rejects an `env` that is not an object.

import { ANTHROPIC_MODELS } from "./models.js";

const GROUPS = {
  claude: "Claude",
  prompt: "Prompt",
  kubernetes: "Kubernetes",
  resources: "Resources",
  run: "Run",
};

/** key, label, type, group, default?, options?, hint (UI), doc (markdown reference; defaults to hint). */
const FIELDS = [
  {
    key: "model",
    label: "Model",
    type: "combobox",
    group: GROUPS.claude,
    options: ANTHROPIC_MODELS.map((m) => ({ label: m.label, value: m.id })),
    hint: "Claude model id passed as --model (e.g. claude-sonnet-4-6). Empty: ANTHROPIC_MODEL, else Claude Code's default.",
    doc:
      "Claude model id passed as `--model`. Empty: the pod's `ANTHROPIC_MODEL`, else Claude Code's default. With " +
      "Bedrock, only Bedrock model ids (`us.anthropic.…`, ARNs) are passed.",
  },
  {
    key: "effort",
    label: "Reasoning effort",
    type: "select",
    group: GROUPS.claude,
    default: "",
    options: [
      { label: "Default", value: "" },
      { label: "Low", value: "low" },
      { label: "Medium", value: "medium" },
      { label: "High", value: "high" },
    ],
    hint: "Passed as --effort (low, medium, high). Default: not passed.",
  },
  {
    key: "maxTurnsPerRun",
    label: "Max turns per run",
    type: "number",
    group: GROUPS.claude,
    default: 0,
    hint: "Passed as --max-turns; 0 = unlimited.",
  },
  {
    key: "dangerouslySkipPermissions",
    label: "Skip permission prompts",
    type: "toggle",
    group: GROUPS.claude,
    default: true,
    hint: "Pass --dangerously-skip-permissions (required for unattended Jobs; the container runs as UID 1000).",
  },
  {
    key: "instructionsFilePath",
    label: "Instructions file",
    type: "text",
    group: GROUPS.claude,
    hint: "Absolute path of a markdown instructions file on the shared /paperclip volume, appended to the system prompt of fresh sessions.",
  },
  {
    key: "extraArgs",
    label: "Extra Claude arguments",
    type: "text",
    group: GROUPS.claude,
    hint: "Extra arguments appended to the claude command: space-separated words or a JSON array of strings.",
  },
  {
    key: "promptTemplate",
    label: "Prompt template",
    type: "textarea",
    group: GROUPS.prompt,
    hint: "The heartbeat prompt, with {{ agent.name }}-style placeholders. Empty: Paperclip's default agent prompt (as claude_local).",
  },
  {
    key: "bootstrapPromptTemplate",
    label: "Bootstrap prompt template",
    type: "textarea",
    group: GROUPS.prompt,
    hint: "Prepended to the prompt of fresh sessions only (not when a session is resumed).",
  },
  {
    key: "cwd",
    label: "Working directory",
    type: "text",
    group: GROUPS.prompt,
    hint: "Working directory in the pod when Paperclip provides no project workspace; must be on the shared /paperclip volume. Default: the agent's workspace.",
  },
  {
    key: "namespace",
    label: "Namespace",
    type: "text",
    group: GROUPS.kubernetes,
    hint: "Namespace of the Jobs. Default: the Paperclip pod's namespace.",
  },
  {
    key: "image",
    label: "Image",
    type: "text",
    group: GROUPS.kubernetes,
    hint: "Container image with the claude CLI. Default: the Paperclip pod's own image.",
  },
  {
    key: "imagePullPolicy",
    label: "Image pull policy",
    type: "select",
    group: GROUPS.kubernetes,
    default: "IfNotPresent",
    options: [
      { label: "IfNotPresent", value: "IfNotPresent" },
      { label: "Always", value: "Always" },
      { label: "Never", value: "Never" },
    ],
    hint: "Pull policy of the claude container.",
  },
  {
    key: "initImage",
    label: "Init image",
    type: "text",
    group: GROUPS.kubernetes,
    default: "busybox:1.36",
    hint: "A busybox image for the write-prompt init container, which unpacks a prompt over about 1 MiB into an emptyDir.",
  },
  {
    key: "kubeconfig",
    label: "Kubeconfig path",
    type: "text",
    group: GROUPS.kubernetes,
    hint: "Path of a kubeconfig on the Paperclip server. Default: in-cluster credentials, else KUBECONFIG.",
  },
  {
    key: "serviceAccountName",
    label: "Service account",
    type: "text",
    group: GROUPS.kubernetes,
    hint: "Service account of the Job pods. Default: the namespace's default account.",
  },
  {
    key: "paperclipApiUrl",
    label: "Paperclip API URL for pods",
    type: "text",
    group: GROUPS.kubernetes,
    hint: "PAPERCLIP_API_URL inside the pods, e.g. http://paperclip.paperclip.svc:3100. Default: the Paperclip pod's PAPERCLIP_API_URL (never a loopback URL).",
  },
  {
    key: "nodeSelector",
    label: "Node selector",
    type: "textarea",
    group: GROUPS.kubernetes,
    hint: 'A JSON object ({"disktype":"ssd"}) or key=value lines.',
  },
  {
    key: "tolerations",
    label: "Tolerations",
    type: "textarea",
    group: GROUPS.kubernetes,
    hint: 'A JSON array of tolerations, e.g. [{"key":"gpu","operator":"Exists","effect":"NoSchedule"}].',
  },
  {
    key: "labels",
    label: "Extra Job labels",
    type: "textarea",
    group: GROUPS.kubernetes,
    hint: "A JSON object or key=value lines; keys under the adapter's own prefixes are ignored.",
  },
  {
    key: "podSpecPatch",
    label: "Pod spec patch",
    type: "textarea",
    group: GROUPS.kubernetes,
    hint: 'A JSON merge patch (RFC 7386) applied to the generated pod spec last, e.g. {"priorityClassName":"agents"}.',
  },
  {
    key: "resources.requests.cpu",
    label: "CPU request",
    type: "text",
    group: GROUPS.resources,
    default: "1000m",
    hint: "Kubernetes quantity, e.g. 500m or 2.",
  },
  {
    key: "resources.requests.memory",
    label: "Memory request",
    type: "text",
    group: GROUPS.resources,
    default: "2Gi",
    hint: "Kubernetes quantity, e.g. 2Gi.",
  },
  {
    key: "resources.limits.cpu",
    label: "CPU limit",
    type: "text",
    group: GROUPS.resources,
    default: "4000m",
    hint: "Kubernetes quantity.",
  },
  {
    key: "resources.limits.memory",
    label: "Memory limit",
    type: "text",
    group: GROUPS.resources,
    default: "8Gi",
    hint: "Kubernetes quantity.",
  },
  {
    key: "timeoutSec",
    label: "Timeout (seconds)",
    type: "number",
    group: GROUPS.run,
    default: 0,
    hint: "Run timeout, enforced by the adapter (the Job's activeDeadlineSeconds is only a backstop); 0 = none.",
  },
  {
    key: "graceSec",
    label: "Grace (seconds)",
    type: "number",
    group: GROUPS.run,
    default: 60,
    hint: "Termination grace period given to the pod when a run times out or is cancelled.",
  },
  {
    key: "ttlSecondsAfterFinished",
    label: "Job TTL after finish (seconds)",
    type: "number",
    group: GROUPS.run,
    default: 300,
    hint: "ttlSecondsAfterFinished of every Job: the cluster's backstop cleanup.",
  },
  {
    key: "retainJobs",
    label: "Keep finished Jobs",
    type: "toggle",
    group: GROUPS.run,
    default: false,
    hint: "Do not delete a Job when its run ends (for debugging); the TTL still applies.",
  },
];

/** AdapterConfigSchema, as `GET /api/adapters/claude_k8s/config-schema` serves it. */
export function getConfigSchema() {
  return {
    fields: FIELDS.map(({ doc: _doc, ...field }) => structuredClone(field)),
  };
}

function docType(field) {
  switch (field.type) {
    case "number":
      return "number";
    case "toggle":
      return "boolean";
    case "select":
      return `string: ${field.options.map((o) => (o.value === "" ? "(empty)" : `\`${o.value}\``)).join(", ")}`;
    default:
      return "string";
  }
}

function docDefault(field) {
  if (field.default === undefined || field.default === "") return "";
  return `, default \`${JSON.stringify(field.default)}\``;
}

function buildDoc() {
  const lines = [
    "# claude_k8s agent configuration",
    "",
    "Adapter: claude_k8s — each heartbeat runs Claude Code (`claude --print --output-format stream-json --verbose`)",
    "in a Kubernetes Job. The Paperclip server and every Job pod share one ReadWriteMany volume at `/paperclip`",
    "(`HOME=/paperclip`), so workspaces, instructions and Claude's session store have the same absolute paths in",
    "both and sessions resume across heartbeats. Image, imagePullSecrets, DNS, the volume, secret volumes and env",
    "are inherited from the Paperclip pod unless set below.",
    "",
  ];
  for (const group of Object.values(GROUPS)) {
    lines.push(`${group} fields:`);
    for (const field of FIELDS.filter((f) => f.group === group)) {
      lines.push(`- ${field.key} (${docType(field)}, optional${docDefault(field)}): ${field.doc ?? field.hint}`);
    }
    lines.push("");
  }
  lines.push(
    "Set with Paperclip's environment-variable editor:",
    "- env (object, optional): extra environment variables for the claude container (plain values or secret",
    "  references); they override variables inherited from the Paperclip pod. PAPERCLIP_API_KEY is never taken from",
    "  here (the run's token reaches the pod through a per-run Secret), and the run's own PAPERCLIP_* variables win.",
    "",
    "Notes:",
    "- Resource fields are flat dotted keys (`resources.requests.cpu`); a nested `resources` object works as well.",
    "- Set `paperclipApiUrl` (or PAPERCLIP_API_URL in the Paperclip Deployment) to the in-cluster Service URL: the",
    "  server's own default, http://127.0.0.1:3100, is unreachable from a pod.",
    "- One Job per agent runs at a time; a second run of the same agent fails with k8s_concurrent_run_blocked.",
    "- Cancelling a run deletes its Job and waits until the pod is gone before the cancellation is acknowledged.",
    "",
  );
  return lines.join("\n");
}

export const agentConfigurationDoc = buildDoc();

/** The schema's keys (for tests and docs). */
export const CONFIG_KEYS = Object.freeze(FIELDS.map((f) => f.key));
