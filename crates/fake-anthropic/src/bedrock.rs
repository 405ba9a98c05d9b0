//! Bedrock's Anthropic runtime API, as Claude Code reaches it with `CLAUDE_CODE_USE_BEDROCK=1` and
//! `ANTHROPIC_BEDROCK_BASE_URL` (plus `CLAUDE_CODE_SKIP_BEDROCK_AUTH=1`, so no AWS signature is needed):
//! `POST /model/{modelId}/invoke` answers the message JSON, `POST /model/{modelId}/invoke-with-response-stream`
//! the same events as the Messages API, each framed as an AWS event-stream message
//! (`:event-type: chunk`, payload `{"bytes": base64(event JSON)}`). The model id is in the path, not the body.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

/// One AWS event-stream message: prelude (total length, headers length, CRC), string headers, payload, CRC.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut h = BytesMut::new();
    for (name, value) in headers {
        h.put_u8(name.len() as u8);
        h.put_slice(name.as_bytes());
        h.put_u8(7); // string
        h.put_u16(value.len() as u16);
        h.put_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(total as u32);
    out.put_u32(h.len() as u32);
    let prelude_crc = crc32(&out[..8]);
    out.put_u32(prelude_crc);
    out.put_slice(&h);
    out.put_slice(payload);
    let crc = crc32(&out);
    out.put_u32(crc);
    out.freeze()
}

/// The event-stream message carrying one Messages API event (its JSON).
pub fn chunk(event: &Value) -> Bytes {
    let payload = json!({"bytes": base64(event.to_string().as_bytes())}).to_string();
    frame(
        &[
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// The JSON of each complete `data:` line in SSE text, and the unconsumed rest.
pub fn sse_data(buffer: &str) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut consumed = 0;
    while let Some(end) = buffer[consumed..].find("\n\n") {
        let event = &buffer[consumed..consumed + end];
        consumed += end + 2;
        if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
            && let Ok(v) = serde_json::from_str::<Value>(data)
            && v["type"] != "ping"
        {
            out.push(v);
        }
    }
    (out, consumed)
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_and_base64_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    #[test]
    fn frame_layout() {
        let f = frame(&[(":event-type", "chunk")], b"{}");
        let total = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, f.len());
        assert_eq!(headers, 1 + 11 + 1 + 2 + 5);
        assert_eq!(
            u32::from_be_bytes(f[8..12].try_into().unwrap()),
            crc32(&f[..8])
        );
        assert_eq!(
            u32::from_be_bytes(f[total - 4..].try_into().unwrap()),
            crc32(&f[..total - 4])
        );
        assert_eq!(&f[12 + headers..total - 4], b"{}");
    }

    #[test]
    fn sse_data_splits_complete_events_and_drops_pings() {
        let text = "event: ping\ndata: {\"type\":\"ping\"}\n\nevent: a\ndata: {\"type\":\"a\"}\n\nevent: b\ndata: {\"ty";
        let (events, used) = sse_data(text);
        assert_eq!(events, [json!({"type": "a"})]);
        assert_eq!(&text[used..], "event: b\ndata: {\"ty");
    }
}
