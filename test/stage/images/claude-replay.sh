#!/bin/bash
# claude-replay: a light stand-in for the `claude` CLI in the stage image local/claude-replay:1, for tests and
# benchmarks about the pipe between the container and Paperclip (log resilience, many concurrent runs), where
# the real CLI's cost would only add noise. It reads the prompt from stdin like claude, prints Claude Code's
# stream-json shapes (system init, assistant lines, a final result) and exits. Never used in place of the real
# CLI where the agent's behaviour is under test.
#
# Env:
#   REPLAY_LINES=N        assistant lines to print (default 20); each is unique: "replay line <i> of <N>"
#   REPLAY_BATCH=B        lines printed between pauses (default 100)
#   REPLAY_PAUSE_MS=P     pause after each batch, in ms (default 0)
#   REPLAY_STAMP=1        each line carries its write time ("t=<unix µs>", bash's EPOCHREALTIME), for log latency
#   REPLAY_LONG_BYTES=L   also print one line of L bytes of text (with multi-byte characters at its ends)
#   REPLAY_FILE=path      replay this stream-json file line by line instead (REPLAY_PAUSE_MS between lines)
#   REPLAY_SESSION_ID=id  the session id to report (default replay-session)
#   REPLAY_EXIT=code      exit code (default 0)
set -eu
cat >/dev/null
sid=${REPLAY_SESSION_ID:-replay-session}
pause_ms=${REPLAY_PAUSE_MS:-0}
pause() { if [ "$pause_ms" -gt 0 ]; then usleep $((pause_ms * 1000)); fi; }

if [ -n "${REPLAY_FILE:-}" ]; then
  while IFS= read -r line; do
    printf '%s\n' "$line"
    pause
  done <"$REPLAY_FILE"
  exit "${REPLAY_EXIT:-0}"
fi

n=${REPLAY_LINES:-20}
printf '{"type":"system","subtype":"init","session_id":"%s","model":"claude-replay","tools":[],"cwd":"%s"}\n' "$sid" "$PWD"
if [ -n "${REPLAY_LONG_BYTES:-}" ]; then
  # é at the start, 🦀 at the end: a multi-byte character lands on every chunk boundary somewhere.
  printf '{"type":"assistant","message":{"id":"msg_long","type":"message","role":"assistant","content":[{"type":"text","text":"\303\251'
  head -c "$REPLAY_LONG_BYTES" /dev/zero | tr '\0' 'x'
  printf '\360\237\246\200"}]},"session_id":"%s"}\n' "$sid"
fi
if [ "${REPLAY_STAMP:-0}" = 1 ]; then
  i=1
  while [ "$i" -le "$n" ]; do
    printf '{"type":"assistant","message":{"id":"msg_%d","type":"message","role":"assistant","content":[{"type":"text","text":"replay line %d of %d t=%s"}]},"session_id":"%s"}\n' \
      "$i" "$i" "$n" "${EPOCHREALTIME/./}" "$sid"
    [ $((i % ${REPLAY_BATCH:-100})) -eq 0 ] && pause
    i=$((i + 1))
  done
else
  # awk prints thousands of lines quickly; fflush before each pause so the batch reaches the log at once.
  awk -v n="$n" -v b="${REPLAY_BATCH:-100}" -v p="$pause_ms" -v sid="$sid" 'BEGIN {
    for (i = 1; i <= n; i++) {
      printf "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_%d\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"replay line %d of %d \303\251\342\202\254\"}]},\"session_id\":\"%s\"}\n", i, i, n, sid
      if (i % b == 0 && p > 0) { fflush(); system("usleep " p * 1000) }
    }
    fflush()
  }'
fi
printf '{"type":"result","subtype":"success","is_error":false,"duration_ms":1,"num_turns":1,"result":"replayed %d lines","session_id":"%s","total_cost_usd":0,"usage":{"input_tokens":1,"output_tokens":%d}}\n' "$n" "$sid" "$n"
exit "${REPLAY_EXIT:-0}"
