// The host side of the `claude-k8s serve` protocol (docs/protocol.md), without any I/O of its own.
//
// Pure: the owner gives it `write(line)` and feeds it the child's stdout (`feed(chunk)`). The channel frames JSON
// Lines in time linear in the line's length, allocates request ids, routes each message to the call with its id,
// fails one call alone when only that call is hurt (a line over the limit, a timeout), and reports through
// `onBroken` what makes the whole stream untrustworthy (the owner then retires the child).

/** The longest line either side may send (docs/protocol.md, "Framing"). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;
/** How much may wait for the child to read it before a new request is refused. */
export const MAX_QUEUED_BYTES = 2 * MAX_LINE_BYTES;

/** An `error` answer of the child, or a failure of the channel itself. `code` is snake_case. */
export class ProtocolError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    Object.assign(this, extra);
  }
}

/** JSON with well-formed strings: serde_json refuses the `\udXXX` escapes JSON.stringify writes for a lone surrogate. */
export function encode(message) {
  return JSON.stringify(message, function wellFormed(_key, v) {
    if (typeof v === "string") return v.toWellFormed();
    if (v === null || typeof v !== "object" || Array.isArray(v) || Object.keys(v).every((k) => k.isWellFormed())) return v;
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k.toWellFormed(), x]));
  });
}

const preview = (text) => JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text);
// serve writes `type` and `id` first (serde keeps the field order), so a line can be attributed from its head.
const HEAD = /^\{"type":"([a-z_]+)","id":"((?:[^"\\]|\\.)*)"/;

/**
 * @param {object} options
 * @param {(line: string) => void} options.write  sends one line (the owner appends the "\n")
 * @param {(hello: object) => void} options.onHello  the child's first line, a `hello`
 * @param {(error: ProtocolError) => void} options.onBroken  the stream cannot be trusted any more (what the child did)
 * @param {(text: string) => void} [options.onNotice]  something worth a log line that hurts no call
 * @param {(id: string) => void} [options.onSettled]  a call got its answer or was failed
 * @param {() => number} [options.queuedBytes]  what the owner's writer still holds
 */
export function createChannel({
  write,
  onHello,
  onBroken,
  onNotice,
  onSettled,
  queuedBytes = () => 0,
  maxLineBytes = MAX_LINE_BYTES,
  maxQueuedBytes = MAX_QUEUED_BYTES,
}) {
  const pending = new Map(); // id -> { type, onMessage, resolve, reject }
  let parts = []; // the pieces of the line being read
  let size = 0;
  let overLimit = null; // the head of a line over the limit, while the rest of it is dropped
  let nextId = 1;
  let greeted = false;
  let closed = null; // the error every later request fails with

  function settle(id, error, value) {
    const entry = pending.get(id);
    if (!entry) return false;
    pending.delete(id);
    if (error) entry.reject(error);
    else entry.resolve(value);
    onSettled?.(id);
    return true;
  }

  function broken(code, message) {
    if (!closed) onBroken(new ProtocolError(code, message));
  }

  function handle(text) {
    if (text.trim() === "") return;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return broken("claude_k8s_protocol_error", `wrote a line that is not JSON: ${preview(text)}`);
    }
    if (message === null || typeof message !== "object" || typeof message.type !== "string") {
      return broken("claude_k8s_protocol_error", `wrote a line that is not a message: ${preview(text)}`);
    }
    if (!greeted || message.type === "hello") {
      if (greeted) return broken("claude_k8s_protocol_error", "said hello a second time");
      greeted = true;
      if (message.type !== "hello") {
        return broken("claude_k8s_handshake_failed", `did not start with a hello line (got ${preview(text)})`);
      }
      return onHello(message);
    }
    const entry = typeof message.id === "string" ? pending.get(message.id) : undefined;
    if (message.type === "error" && message.id == null) {
      onNotice?.(`claude-k8s serve could not read a request: ${message.code}: ${message.message}`);
    } else if (!entry) {
      // A late line of a call that was already failed here (timeout, cancelled, line over the limit).
    } else if (message.type === "result") {
      settle(message.id, null, message.result);
    } else if (message.type === "error") {
      const code = typeof message.code === "string" && message.code ? message.code : "claude_k8s_error";
      const text = typeof message.message === "string" ? message.message : "claude-k8s answered with an error";
      settle(message.id, new ProtocolError(code, text, { fromChild: true }));
    } else {
      // log, meta, event and any future event type: the owner decides (unknown types are ignored there).
      try {
        entry.onMessage?.(message);
      } catch (err) {
        onNotice?.(`a run callback failed: ${err?.stack ?? err}`);
      }
    }
  }

  function take(piece) {
    if (overLimit !== null || piece.length === 0) return;
    if (size + piece.length > maxLineBytes) {
      overLimit = Buffer.concat([...parts, piece], Math.min(size + piece.length, 256)).toString("utf8");
      parts = [];
      size = 0;
      return;
    }
    parts.push(piece);
    size += piece.length;
  }

  function endLine() {
    if (overLimit !== null) {
      const head = overLimit;
      const [, type, id] = head.match(HEAD) ?? [];
      overLimit = null;
      const error = new ProtocolError(
        "line_too_long",
        `claude-k8s serve sent a ${type ?? "message"} line longer than ${maxLineBytes} bytes for this call; the call was ` +
          `given up (other calls are unaffected)`,
      );
      if (!channel.abandon(id, error)) onNotice?.(`dropped a line longer than ${maxLineBytes} bytes: ${preview(head)}`);
      return;
    }
    const line = parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
    parts = [];
    size = 0;
    handle(line.toString("utf8"));
  }

  const channel = {
    /** Bytes the child wrote on stdout, in any chunking. */
    feed(chunk) {
      if (closed) return;
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      let start = 0;
      for (let nl = bytes.indexOf(10); nl !== -1 && !closed; nl = bytes.indexOf(10, start)) {
        take(bytes.subarray(start, nl));
        endLine();
        start = nl + 1;
      }
      if (!closed) take(bytes.subarray(start));
    },

    /**
     * Sends a request; returns its id and the promise of its answer. `onMessage` receives every `log`, `meta`,
     * `event` (and unknown) message of this id, in order, before the promise settles.
     */
    request(type, params, onMessage) {
      if (closed) return { id: null, promise: Promise.reject(closed) };
      const id = String(nextId++);
      const promise = new Promise((resolve, reject) => pending.set(id, { type, onMessage, resolve, reject }));
      let line;
      try {
        line = encode({ type, id, params });
      } catch (err) {
        settle(id, new ProtocolError("bad_request", `cannot encode the ${type} request: ${err.message}`));
        return { id, promise };
      }
      const bytes = Buffer.byteLength(line, "utf8");
      if (bytes > maxLineBytes) {
        settle(id, new ProtocolError("line_too_long", `the ${type} request is ${bytes} bytes, over the limit of ${maxLineBytes}`));
      } else if (queuedBytes() + bytes > maxQueuedBytes) {
        settle(
          id,
          new ProtocolError(
            "claude_k8s_queue_full",
            `claude-k8s serve has not read ${queuedBytes()} bytes of earlier requests yet (limit ${maxQueuedBytes}); ` +
              `this ${type} request was refused`,
          ),
        );
      } else {
        write(line);
      }
      return { id, promise };
    },

    /** A request without an answer of its own (`cancel`). */
    notify(message) {
      if (closed) return false;
      write(encode(message));
      return true;
    },

    /** Fails one call here (and cancels it in the child, so its Job does not run on unobserved). */
    abandon(id, error) {
      const type = pending.get(id)?.type;
      if (!settle(id, error)) return false;
      if (type === "execute") channel.notify({ type: "cancel", id, reason: error.message });
      return true;
    },

    has: (id) => pending.has(id),
    get pendingCount() {
      return pending.size;
    },
    get closed() {
      return closed !== null;
    },

    /** Fails every pending request (and every later one) with `error`. Idempotent. */
    close(error) {
      if (closed) return;
      closed = error;
      // A last line without its newline is still delivered if it is a whole message (a cut line is dropped).
      if (overLimit === null && size > 0) endLine();
      for (const id of [...pending.keys()]) settle(id, error);
    },
  };
  return channel;
}
