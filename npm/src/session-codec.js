// The session codec. Paperclip stores the `sessionParams` of a run's result and hands them back to the next run;
// their meaning (field names, claude_local's spellings, resume gating) belongs to the child
// (crates/claude-k8s/src/run/plan/invocation.rs), so the codec keeps a JSON object as it is and decides nothing.

const asObject = (raw) => (raw !== null && typeof raw === "object" && !Array.isArray(raw) ? { ...raw } : null);

export const sessionCodec = {
  deserialize: asObject,
  serialize: asObject,
  getDisplayId: (params) => (typeof params?.sessionId === "string" && params.sessionId.trim() ? params.sessionId : null),
};
