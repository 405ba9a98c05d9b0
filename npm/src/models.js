// The model lists claude_local 2026.916.1 offers (`index.js` `models`, `server/models.js` `BEDROCK_MODELS`): the
// Anthropic list, or the Bedrock list when the server process is configured for Bedrock. Whether it is, is decided
// once, by the binary (Claude Code's rule, the one a run's env is read by; serve's `hello` says `bedrock`), never
// here. Unlike claude_local it does not ask the Anthropic API for more: the pods may use other credentials than
// the server, and the server may have no route to the API at all.

export const ANTHROPIC_MODELS = Object.freeze([
  { id: "claude-opus-4-8", label: "Claude Opus 4.8" },
  { id: "claude-sonnet-5", label: "Claude Sonnet 5" },
  { id: "claude-fable-5-1", label: "Claude Fable 5.1" },
  { id: "claude-fable-5", label: "Claude Fable 5" },
  { id: "claude-mythos-5", label: "Claude Mythos 5" },
  { id: "claude-opus-5", label: "Claude Opus 5" },
  { id: "claude-opus-4-7", label: "Claude Opus 4.7" },
  { id: "claude-opus-4-6", label: "Claude Opus 4.6" },
  { id: "claude-sonnet-4-6", label: "Claude Sonnet 4.6" },
  { id: "claude-sonnet-4-5", label: "Claude Sonnet 4.5" },
  { id: "claude-haiku-4-5", label: "Claude Haiku 4.5" },
]);

export const BEDROCK_MODELS = Object.freeze([
  { id: "us.anthropic.claude-opus-4-8-v1", label: "Bedrock Opus 4.8" },
  { id: "us.anthropic.claude-fable-5-1", label: "Bedrock Fable 5.1" },
  { id: "us.anthropic.claude-fable-5-v1", label: "Bedrock Fable 5" },
  { id: "us.anthropic.claude-opus-4-6-v1", label: "Bedrock Opus 4.6" },
  { id: "us.anthropic.claude-sonnet-4-5-20250929-v2:0", label: "Bedrock Sonnet 4.5" },
  { id: "us.anthropic.claude-haiku-4-5-20251001-v1:0", label: "Bedrock Haiku 4.5" },
]);

/** The Bedrock or the Anthropic list (copies). Which one is the binary's call (`hello.bedrock`). */
export function modelsList(bedrock) {
  return (bedrock ? BEDROCK_MODELS : ANTHROPIC_MODELS).map((m) => ({ ...m }));
}
