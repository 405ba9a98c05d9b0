// The host side of the `claude-k8s serve` protocol (docs/protocol.md), without any I/O of its own.
//
// Pure: it never touches child_process or streams. The owner gives it a `write(line)` callback and feeds it what
// the child printed (`feed(chunk)`); the channel frames JSON Lines, allocates request ids, routes each child
// message to the pending request with its id, and fails every pending request at once when the owner closes it.

import { StringDecoder } from "node:string_decoder";

/** The longest line either side may send (docs/protocol.md, "Framing"). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

/** An `error` answer of the child, or a failure of the channel itself. `code` is snake_case. */
export class ProtocolError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    Object.assign(this, extra);
  }
}

/**
 * @param {object} options
 * @param {(line: string) => void} options.write  sends one line (the channel appends the "\n")
 * @param {(hello: object) => void} [options.onHello]  the child's first line, when it is a `hello`
 * @param {(message: object) => void} [options.onStray]  a message no pending request owns (an `error` with id null,
 *   a line for an unknown id, a first line that is not `hello`); for diagnostics only
 * @param {number} [options.maxLineBytes]
 */
export function createChannel({ write, onHello, onStray, maxLineBytes = MAX_LINE_BYTES }) {
  const decoder = new StringDecoder("utf8");
  const pending = new Map(); // id -> { type, onMessage, resolve, reject }
  let buffered = "";
  let nextId = 1;
  let sawFirstLine = false;
  let closed = null; // the error every later request fails with

  function stray(message) {
    onStray?.(message);
  }

  function settle(id, entry, outcome) {
    pending.delete(id);
    if (outcome.error) entry.reject(outcome.error);
    else entry.resolve(outcome.value);
  }

  function route(message) {
    if (!sawFirstLine) {
      sawFirstLine = true;
      if (message.type === "hello") {
        onHello?.(message);
        return;
      }
      stray({ ...message, __reason: "the first line was not a hello" });
    }
    if (message.type === "hello") {
      stray({ ...message, __reason: "a second hello" });
      return;
    }
    const id = typeof message.id === "string" ? message.id : null;
    const entry = id === null ? undefined : pending.get(id);
    if (!entry) {
      stray(message);
      return;
    }
    switch (message.type) {
      case "result":
        settle(id, entry, { value: message.result });
        return;
      case "error":
        settle(id, entry, {
          error: new ProtocolError(
            typeof message.code === "string" && message.code ? message.code : "claude_k8s_error",
            typeof message.message === "string" ? message.message : "claude-k8s answered with an error",
            { fromChild: true },
          ),
        });
        return;
      default:
        // log, meta, event and any future event type: the owner decides (unknown types are ignored there).
        try {
          entry.onMessage?.(message);
        } catch (err) {
          stray({ type: "host_callback_failed", id, error: String(err?.stack ?? err) });
        }
    }
  }

  function handleLine(line) {
    if (line.trim() === "") return;
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      stray({ type: "unparsable_line", line: line.slice(0, 500) });
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message) || typeof message.type !== "string") {
      stray({ type: "not_a_message", line: line.slice(0, 500) });
      return;
    }
    route(message);
  }

  const channel = {
    /** Bytes (or text) the child wrote on stdout; any chunking. */
    feed(chunk) {
      if (closed) return;
      buffered += typeof chunk === "string" ? chunk : decoder.write(chunk);
      let newline;
      while ((newline = buffered.indexOf("\n")) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        handleLine(line);
      }
      if (Buffer.byteLength(buffered, "utf8") > maxLineBytes) {
        buffered = "";
        channel.close(
          new ProtocolError("line_too_long", `claude-k8s sent a line longer than ${maxLineBytes} bytes`),
        );
      }
    },

    /**
     * Sends a request and returns its id and the promise of its answer. `onMessage` receives every `log`, `meta`,
     * `event` (and unknown) message of this id, in order, before the promise settles.
     */
    request(type, params, onMessage) {
      if (closed) {
        return { id: null, promise: Promise.reject(closed) };
      }
      const id = String(nextId++);
      const promise = new Promise((resolve, reject) => {
        pending.set(id, { type, onMessage, resolve, reject });
      });
      let line;
      try {
        line = JSON.stringify({ type, id, params });
      } catch (err) {
        const entry = pending.get(id);
        settle(id, entry, { error: new ProtocolError("bad_request", `cannot encode the ${type} request: ${err.message}`) });
        return { id, promise };
      }
      if (Buffer.byteLength(line, "utf8") > maxLineBytes) {
        const entry = pending.get(id);
        settle(id, entry, {
          error: new ProtocolError("line_too_long", `the ${type} request is larger than ${maxLineBytes} bytes`),
        });
        return { id, promise };
      }
      write(line);
      return { id, promise };
    },

    /** A request without an answer of its own (`cancel`, `shutdown`). */
    notify(message) {
      if (closed) return false;
      write(JSON.stringify(message));
      return true;
    },

    has(id) {
      return pending.has(id);
    },

    get pendingCount() {
      return pending.size;
    },

    get closed() {
      return closed !== null;
    },

    /** Fails every pending request (and every later one) with `error`. Idempotent. */
    close(error) {
      if (closed) return;
      const rest = buffered + decoder.end();
      buffered = "";
      // A last line without its newline is still a complete message if it parses.
      if (rest.trim()) handleLine(rest);
      closed = error instanceof Error ? error : new ProtocolError("closed", String(error ?? "the channel was closed"));
      for (const [id, entry] of [...pending]) settle(id, entry, { error: closed });
    },
  };
  return channel;
}
