//! The log's record format (format version 4): a 16-byte frame, a small binary head and, for
//! messages, the raw body bytes (no base64, no JSON around them).
//!
//! ```text
//! frame  0  u16  magic 0x5743
//!        2  u8   kind (1 message, 2 state, 3 settle, 4 padding, 5 segment header)
//!        3  u8   1 = sealed (format 4), 0 = unsealed (formats 2 and 3, and segment headers)
//!        4  u32  head length
//!        8  u32  body length
//!       12  u32  CRC-32 of [the segment's salt, u64, when sealed], frame bytes 0..12, the head
//! head   kind-specific, below; every integer little-endian, strings as u32 length + UTF-8
//! body   message kind only: the webhook body exactly as received
//! ```
//!
//! Since format 4 a segment file may be recycled (log.rs): a drained segment is renamed and
//! written over from the start instead of being deleted, so that its `fdatasync`s overwrite
//! blocks the file already has and need no journal commit. Past the last record of its new life
//! lie the records of its earlier lives, whole and with good CRCs. So every life starts with a
//! segment header (segment number and a random salt, at offset 0, unsealed), and every record
//! after it is sealed: its CRC also covers that salt. A record of an earlier life (another salt)
//! ends the scan like a torn one. The salt is random rather than the segment number so that a
//! webhook body crafted to look like a sealed record cannot be guessed into a later life.
//!
//! A message head starts with what the in-memory index needs (channel id, sequence, times,
//! ids), so start-up decodes only that prefix and never reads a body; the body has its own
//! CRC in the head, checked whenever the body is read. A frame that does not check out ends
//! the log: it can only be the torn tail of a batch that was never acknowledged.
//!
//! A batch the writer syncs ends on a page boundary, made up with a padding record (zeros for
//! a head), when that padding is at most a quarter of the batch. The next batch then starts on
//! a fresh page instead of writing the previous batch's last page again: with batches of a few
//! dozen small messages, that page was about a tenth of what reached the disk.

use std::borrow::Cow;

use connect_protocol::message::{Attempts, DeadLetterReason, StoredMessage};
use connect_protocol::time::Timestamp;

pub(super) const FRAME: usize = 16;
const MAGIC: u16 = 0x5743;

pub(super) const KIND_MESSAGE: u8 = 1;
pub(super) const KIND_STATE: u8 = 2;
pub(super) const KIND_SETTLE: u8 = 3;
pub(super) const KIND_PAD: u8 = 4;
pub(super) const KIND_SEGMENT: u8 = 5;

/// Frame byte 3 of a sealed record.
const SEALED: u8 = 1;
/// A segment header's head: the segment number (u32) and the salt of this life (u64).
const SEGMENT_HEAD: usize = 12;
/// Where the first record of a format-4 segment starts: after its header.
pub(super) const SEGMENT_START: u64 = (FRAME + SEGMENT_HEAD) as u64;

/// The page size the writer aligns the end of each batch to.
pub(super) const PAGE: u64 = 4096;

/// Heads longer than this are refused as corrupt (a message head holds ids, path, query and
/// headers, all bounded far below this by the ingress limits).
pub(super) const MAX_HEAD: u32 = 16 * 1024 * 1024;

const F_BODY: u8 = 1;
const F_RAW_HEADERS: u8 = 2;
const F_PAYLOAD: u8 = 4;
const F_MASKED: u8 = 8;
const F_NAMESPACE: u8 = 16;
const F_CONTENT_TYPE: u8 = 32;
const F_JSON: u8 = 64;
/// The head after `flags` is the compact layout (with its own flags byte, `C_*`).
const F_COMPACT: u8 = 128;

/// The id is `msg_` + 16 hex digits, stored as the `u64` they spell.
const C_ID_PACKED: u8 = 1;
/// The content type is the value of the first `content-type` header (not stored again).
const C_CT_HEADER: u8 = 2;
/// The path is `/webhook/` + the webhook id (not stored).
const C_DEFAULT_PATH: u8 = 4;

/// Header names stored as a one-byte code (index + 1; 0 means a name follows). Append only:
/// the codes are part of the format.
const KNOWN_HEADERS: [&str; 24] = [
    "host",
    "content-type",
    "content-length",
    "user-agent",
    "accept",
    "accept-encoding",
    "connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "traceparent",
    "authorization",
    "date",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "x-signature",
    "x-webhook-signature",
    "content-encoding",
];

const NONE_TIME: i64 = i64::MIN;

#[derive(Debug, thiserror::Error)]
#[error("corrupt record: {0}")]
pub(super) struct Corrupt(pub &'static str);

/// A decoded frame header.
#[derive(Clone, Copy, Debug)]
pub(super) struct Frame {
    pub kind: u8,
    pub sealed: bool,
    pub head_len: u32,
    pub body_len: u32,
    pub crc: u32,
}

impl Frame {
    pub fn parse(b: &[u8; FRAME]) -> Result<Self, Corrupt> {
        if u16::from_le_bytes([b[0], b[1]]) != MAGIC {
            return Err(Corrupt("bad magic"));
        }
        let kind = b[2];
        let sealed = b[3] == SEALED;
        if !(KIND_MESSAGE..=KIND_SEGMENT).contains(&kind)
            || !(b[3] == 0 || sealed)
            || (kind == KIND_SEGMENT && sealed)
        {
            return Err(Corrupt("unknown kind"));
        }
        let head_len = u32::from_le_bytes(b[4..8].try_into().unwrap_or_default());
        let body_len = u32::from_le_bytes(b[8..12].try_into().unwrap_or_default());
        if head_len == 0 || head_len > MAX_HEAD || (kind != KIND_MESSAGE && body_len != 0) {
            return Err(Corrupt("bad lengths"));
        }
        Ok(Self {
            kind,
            sealed,
            head_len,
            body_len,
            crc: u32::from_le_bytes(b[12..16].try_into().unwrap_or_default()),
        })
    }

    pub fn total(&self) -> u64 {
        FRAME as u64 + u64::from(self.head_len) + u64::from(self.body_len)
    }

    /// Checks the head against the frame's CRC: a sealed record with the salt of the segment
    /// it was read from, an unsealed one (a segment header, or a record of a segment written
    /// before format 4) without. A sealed record in an unsealed segment, or the reverse, fails.
    pub fn check(
        &self,
        frame: &[u8; FRAME],
        head: &[u8],
        salt: Option<u64>,
    ) -> Result<(), Corrupt> {
        let seal = match (self.sealed, salt) {
            (true, Some(salt)) => Some(salt),
            (false, None) => None,
            _ => return Err(Corrupt("record sealed for another segment")),
        };
        if head_crc(seal, &frame[..12], head) == self.crc {
            Ok(())
        } else {
            Err(Corrupt("head checksum mismatch"))
        }
    }
}

fn head_crc(salt: Option<u64>, frame12: &[u8], head: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if let Some(salt) = salt {
        h.update(&salt.to_le_bytes());
    }
    h.update(frame12);
    h.update(head);
    h.finalize()
}

/// The frame and head of a whole record, or `Corrupt` when it is too short for them.
fn frame_and_head(rec: &[u8]) -> Result<(Frame, usize), Corrupt> {
    let f: &[u8; FRAME] = rec
        .get(..FRAME)
        .and_then(|b| b.try_into().ok())
        .ok_or(Corrupt("short record"))?;
    let frame = Frame::parse(f)?;
    let end = FRAME + frame.head_len as usize;
    if rec.len() < end {
        return Err(Corrupt("short record"));
    }
    Ok((frame, end))
}

/// Seals a whole framed record (as the encoders made it, unsealed) for the segment whose
/// life has `salt`: marks it sealed and seeds its CRC with the salt.
pub(super) fn seal(rec: &mut [u8], salt: u64) {
    let Ok((frame, end)) = frame_and_head(rec) else {
        return;
    };
    if frame.kind == KIND_SEGMENT {
        return;
    }
    rec[3] = SEALED;
    let crc = head_crc(Some(salt), &rec[..12], &rec[FRAME..end]);
    rec[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a whole record read from a segment whose life has `salt` (`None`: a segment written
/// before format 4) and gives it back unsealed, as the encoders made it, for every reader.
pub(super) fn unseal(rec: &mut [u8], salt: Option<u64>) -> Result<(), Corrupt> {
    let (frame, end) = frame_and_head(rec)?;
    let f: [u8; FRAME] = rec[..FRAME]
        .try_into()
        .map_err(|_| Corrupt("short record"))?;
    frame.check(&f, &rec[FRAME..end], salt)?;
    if frame.sealed {
        rec[3] = 0;
        let crc = head_crc(None, &rec[..12], &rec[FRAME..end]);
        rec[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}

/// The header a segment's life starts with (unsealed; it carries the salt).
pub(super) fn segment_header(seg: u32, salt: u64) -> Vec<u8> {
    let mut head = Vec::with_capacity(SEGMENT_HEAD);
    head.extend_from_slice(&seg.to_le_bytes());
    head.extend_from_slice(&salt.to_le_bytes());
    let mut out = Vec::with_capacity(SEGMENT_START as usize);
    frame(&mut out, KIND_SEGMENT, &head, &[]);
    out
}

/// (segment number, salt) of a segment header's head.
pub(super) fn decode_segment_header(head: &[u8]) -> Result<(u32, u64), Corrupt> {
    let mut d = Dec(head);
    let seg = d.u32()?;
    let salt = d.u64()?;
    if !d.0.is_empty() {
        return Err(Corrupt("bad segment header"));
    }
    Ok((seg, salt))
}

/// Appends one framed record to `out`.
pub(super) fn frame(out: &mut Vec<u8>, kind: u8, head: &[u8], body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 12]);
    h.update(head);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(body);
}

// --- writing --------------------------------------------------------------------------------

/// How many bytes of padding take a log that ends at `end` to the next page boundary: 0, or
/// enough for a padding record (a frame and a head of at least one byte).
pub(super) fn pad_after(end: u64) -> usize {
    match (PAGE - end % PAGE) % PAGE {
        0 => 0,
        n if n > FRAME as u64 => n as usize,
        n => (n + PAGE) as usize,
    }
}

/// A padding record of exactly `len` bytes (`len > FRAME`), skipped by every reader.
pub(super) fn pad_record(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    frame(&mut out, KIND_PAD, &vec![0; len - FRAME], &[]);
    out
}

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn time(&mut self, t: Option<Timestamp>) {
        self.i64(t.map_or(NONE_TIME, |t| t.micros()));
    }
    /// LEB128: 7 bits per byte, low first.
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn vstr(&mut self, v: &str) {
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v.as_bytes());
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A whole message record (frame, head and body), ready to append, with the compact head:
/// lengths and counts as varints, an id the cloud made as the 8 bytes it spells, the usual
/// header names as one-byte codes, and neither the path nor the content type when they
/// follow from the webhook id and the headers. (About 90 bytes less than the fixed layout
/// for a typical webhook; the fixed layout of the first format-2 stores is still read.)
pub(super) fn message_record(chan_id: u64, seq: u64, m: &StoredMessage) -> Vec<u8> {
    let body: &[u8] = m.body.as_deref().unwrap_or_default();
    let headers = m.raw_headers.as_deref().unwrap_or_default();
    let packed_id = super::ids::pack(&m.message_id);
    let default_path = m.path.strip_prefix("/webhook/") == Some(m.webhook_id.as_str());
    let ct_header = m.content_type.as_deref().is_some_and(|ct| {
        headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .is_some_and(|(_, v)| v == ct)
    });
    let mut cflags = 0;
    for (on, bit) in [
        (packed_id.is_some(), C_ID_PACKED),
        (ct_header, C_CT_HEADER),
        (default_path, C_DEFAULT_PATH),
    ] {
        if on {
            cflags |= bit;
        }
    }
    let headers_len: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut e = Enc(Vec::with_capacity(
        64 + m.message_id.len() + m.path.len() + m.query.len() + headers_len,
    ));
    e.u64(chan_id);
    e.u64(seq);
    e.u32(crc32fast::hash(body));
    e.u8(flags_of(m) | F_COMPACT);
    e.i64(m.received_at.micros());
    e.varint(zigzag(
        m.expires_at.micros().wrapping_sub(m.received_at.micros()),
    ));
    e.u8(cflags);
    match packed_id {
        Some(k) => e.u64(k),
        None => e.vstr(&m.message_id),
    }
    e.vstr(&m.webhook_id);
    e.vstr(m.namespace.as_deref().unwrap_or_default());
    // --- the index prefix ends here ---
    e.vstr(&m.method);
    if !default_path {
        e.vstr(&m.path);
    }
    e.vstr(&m.query);
    e.varint(headers.len() as u64);
    for (n, v) in headers {
        match KNOWN_HEADERS.iter().position(|k| k == n) {
            Some(i) => e.varint(i as u64 + 1),
            None => {
                e.varint(0);
                e.vstr(n);
            }
        }
        e.vstr(v);
    }
    if !ct_header {
        e.vstr(m.content_type.as_deref().unwrap_or_default());
    }
    let (payload, masked) = json_parts(m);
    e.vstr(&payload);
    e.vstr(&masked);
    let mut out = Vec::with_capacity(FRAME + e.0.len() + body.len());
    frame(&mut out, KIND_MESSAGE, &e.0, body);
    out
}

fn flags_of(m: &StoredMessage) -> u8 {
    let mut flags = 0;
    for (on, bit) in [
        (m.body.is_some(), F_BODY),
        (m.raw_headers.is_some(), F_RAW_HEADERS),
        (m.payload.is_some(), F_PAYLOAD),
        (m.masked_headers.is_some(), F_MASKED),
        (m.namespace.is_some(), F_NAMESPACE),
        (m.content_type.is_some(), F_CONTENT_TYPE),
        (m.is_json, F_JSON),
    ] {
        if on {
            flags |= bit;
        }
    }
    flags
}

/// The masked payload and headers as JSON text (empty when absent).
fn json_parts(m: &StoredMessage) -> (String, String) {
    let json = |v: Option<String>| v.unwrap_or_default();
    (
        json(
            m.payload
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok()),
        ),
        json(
            m.masked_headers
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok()),
        ),
    )
}

/// The first format-2 head layout (fixed-width integers, every string in full), as written
/// before the compact head; kept to prove old records still read.
#[cfg(test)]
pub(super) fn message_record_fixed(chan_id: u64, seq: u64, m: &StoredMessage) -> Vec<u8> {
    let body: &[u8] = m.body.as_deref().unwrap_or_default();
    let mut e = Enc(Vec::new());
    e.u64(chan_id);
    e.u64(seq);
    e.u32(crc32fast::hash(body));
    e.u8(flags_of(m));
    e.i64(m.received_at.micros());
    e.i64(m.expires_at.micros());
    e.str(&m.message_id);
    e.str(&m.webhook_id);
    e.str(m.namespace.as_deref().unwrap_or_default());
    e.str(&m.method);
    e.str(&m.path);
    e.str(&m.query);
    e.str(m.content_type.as_deref().unwrap_or_default());
    let headers = m.raw_headers.as_deref().unwrap_or_default();
    e.u32(headers.len() as u32);
    for (n, v) in headers {
        e.str(n);
        e.str(v);
    }
    let (payload, masked) = json_parts(m);
    e.str(&payload);
    e.str(&masked);
    let mut out = Vec::new();
    frame(&mut out, KIND_MESSAGE, &e.0, body);
    out
}

/// Sets the sequence of an encoded message record (the ingress encodes before the
/// sequence is known) and re-seals the head.
pub(super) fn set_seq(rec: &mut [u8], seq: u64) {
    rec[FRAME + 8..FRAME + 16].copy_from_slice(&seq.to_le_bytes());
    let head_len = u32::from_le_bytes(rec[4..8].try_into().unwrap_or_default()) as usize;
    let mut h = crc32fast::Hasher::new();
    h.update(&rec[..12]);
    h.update(&rec[FRAME..FRAME + head_len]);
    rec[12..16].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Reads a whole message record as stored.
pub(super) fn decode_message_record(rec: &[u8], channel: &str) -> Result<StoredMessage, Corrupt> {
    let (head, body) = split_record(rec)?;
    decode_message(head, body, channel)
}

/// Checks a whole record's frame and returns (head, body).
pub(super) fn split_record(rec: &[u8]) -> Result<(&[u8], &[u8]), Corrupt> {
    let f: &[u8; FRAME] = rec
        .get(..FRAME)
        .and_then(|b| b.try_into().ok())
        .ok_or(Corrupt("short record"))?;
    let frame = Frame::parse(f)?;
    if rec.len() as u64 != frame.total() {
        return Err(Corrupt("record length mismatch"));
    }
    let head = &rec[FRAME..FRAME + frame.head_len as usize];
    frame.check(f, head, None)?;
    Ok((head, &rec[FRAME + frame.head_len as usize..]))
}

/// Where a message is, as far as a restart is concerned (leases are not persisted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum PlaceDisk {
    Ready,
    Delayed {
        until: Timestamp,
    },
    Dead {
        reason: DeadLetterReason,
        at: Timestamp,
    },
}

pub(super) fn state_record(
    chan_id: u64,
    seq: u64,
    attempts: &Attempts,
    place: PlaceDisk,
) -> Vec<u8> {
    let mut e = Enc(Vec::with_capacity(64));
    e.u64(chan_id);
    e.u64(seq);
    e.u32(attempts.delivery_count);
    e.time(attempts.first_attempt_at);
    e.time(attempts.last_attempt_at);
    match place {
        PlaceDisk::Ready => {
            e.u8(0);
            e.i64(0);
            e.u8(0);
        }
        PlaceDisk::Delayed { until } => {
            e.u8(1);
            e.i64(until.micros());
            e.u8(0);
        }
        PlaceDisk::Dead { reason, at } => {
            e.u8(2);
            e.i64(at.micros());
            e.u8(reason_code(reason));
        }
    }
    match &attempts.last_error {
        Some(err) => {
            e.u8(1);
            e.str(err);
        }
        None => e.u8(0),
    }
    let mut out = Vec::with_capacity(FRAME + e.0.len());
    frame(&mut out, KIND_STATE, &e.0, &[]);
    out
}

pub(super) fn settle_record(chan_id: u64, seq: u64) -> Vec<u8> {
    let mut e = Enc(Vec::with_capacity(16));
    e.u64(chan_id);
    e.u64(seq);
    let mut out = Vec::with_capacity(FRAME + 16);
    frame(&mut out, KIND_SETTLE, &e.0, &[]);
    out
}

fn reason_code(r: DeadLetterReason) -> u8 {
    match r {
        DeadLetterReason::Expired => 0,
        DeadLetterReason::Rejected => 1,
        DeadLetterReason::MaxDeliveryAttempts => 2,
    }
}

fn reason_of(c: u8) -> Result<DeadLetterReason, Corrupt> {
    Ok(match c {
        0 => DeadLetterReason::Expired,
        1 => DeadLetterReason::Rejected,
        2 => DeadLetterReason::MaxDeliveryAttempts,
        _ => return Err(Corrupt("unknown dead-letter reason")),
    })
}

// --- reading --------------------------------------------------------------------------------

struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated head"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, Corrupt> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Corrupt("invalid UTF-8"))
    }
    fn time(&mut self) -> Result<Option<Timestamp>, Corrupt> {
        let v = self.i64()?;
        Ok((v != NONE_TIME).then(|| Timestamp::from_micros(v)))
    }
    fn varint(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Corrupt("varint too long"))
    }
    fn vstr(&mut self) -> Result<&'a str, Corrupt> {
        let n = usize::try_from(self.varint()?).map_err(|_| Corrupt("length too large"))?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Corrupt("invalid UTF-8"))
    }
}

/// What start-up needs of a message record.
pub(super) struct MessageIndex<'a> {
    pub chan_id: u64,
    pub seq: u64,
    pub received_at: Timestamp,
    pub expires_at: Timestamp,
    pub message_id: Cow<'a, str>,
    pub webhook_id: &'a str,
    pub namespace: Option<&'a str>,
}

struct Prefix<'a> {
    index: MessageIndex<'a>,
    body_crc: u32,
    flags: u8,
    /// The compact layout's flags (`C_*`), when the head has that layout.
    compact: Option<u8>,
    rest: Dec<'a>,
}

fn prefix(head: &[u8]) -> Result<Prefix<'_>, Corrupt> {
    let mut d = Dec(head);
    let chan_id = d.u64()?;
    let seq = d.u64()?;
    let body_crc = d.u32()?;
    let flags = d.u8()?;
    let received = d.i64()?;
    let received_at = Timestamp::from_micros(received);
    let (expires_at, compact, message_id, webhook_id, ns);
    if flags & F_COMPACT != 0 {
        expires_at = Timestamp::from_micros(received.wrapping_add(unzigzag(d.varint()?)));
        let c = d.u8()?;
        message_id = if c & C_ID_PACKED != 0 {
            Cow::Owned(format!("msg_{:016x}", d.u64()?))
        } else {
            Cow::Borrowed(d.vstr()?)
        };
        webhook_id = d.vstr()?;
        ns = d.vstr()?;
        compact = Some(c);
    } else {
        expires_at = Timestamp::from_micros(d.i64()?);
        message_id = Cow::Borrowed(d.str()?);
        webhook_id = d.str()?;
        ns = d.str()?;
        compact = None;
    }
    Ok(Prefix {
        index: MessageIndex {
            chan_id,
            seq,
            received_at,
            expires_at,
            message_id,
            webhook_id,
            namespace: (flags & F_NAMESPACE != 0).then_some(ns),
        },
        body_crc,
        flags,
        compact,
        rest: d,
    })
}

pub(super) fn message_index(head: &[u8]) -> Result<MessageIndex<'_>, Corrupt> {
    Ok(prefix(head)?.index)
}

/// Decodes a whole message record's head and body (the body's CRC is checked).
pub(super) fn decode_message(
    head: &[u8],
    body: &[u8],
    channel: &str,
) -> Result<StoredMessage, Corrupt> {
    let Prefix {
        index,
        body_crc,
        flags,
        compact,
        mut rest,
    } = prefix(head)?;
    if crc32fast::hash(body) != body_crc {
        return Err(Corrupt("body checksum mismatch"));
    }
    let (method, path, query, content_type, headers, payload, masked) = match compact {
        Some(c) => compact_rest(&mut rest, c, index.webhook_id)?,
        None => fixed_rest(&mut rest)?,
    };
    let on = |bit: u8| flags & bit != 0;
    Ok(StoredMessage {
        message_id: index.message_id.into_owned(),
        channel: channel.to_owned(),
        webhook_id: index.webhook_id.to_owned(),
        namespace: index.namespace.map(str::to_owned),
        sequence: index.seq,
        received_at: index.received_at,
        expires_at: index.expires_at,
        method,
        path,
        query,
        raw_headers: on(F_RAW_HEADERS).then_some(headers),
        body: on(F_BODY).then(|| body.to_vec()),
        payload: if on(F_PAYLOAD) {
            Some(serde_json::from_str(payload).map_err(|_| Corrupt("bad payload JSON"))?)
        } else {
            None
        },
        masked_headers: if on(F_MASKED) {
            Some(serde_json::from_str(masked).map_err(|_| Corrupt("bad masked headers JSON"))?)
        } else {
            None
        },
        content_type: on(F_CONTENT_TYPE).then_some(content_type),
        is_json: on(F_JSON),
    })
}

type Rest<'a> = (
    String,
    String,
    String,
    String,
    Vec<(String, String)>,
    &'a str,
    &'a str,
);

/// The rest of a fixed-layout message head: method, path, query, content type, headers,
/// payload and masked headers.
fn fixed_rest<'a>(d: &mut Dec<'a>) -> Result<Rest<'a>, Corrupt> {
    let method = d.str()?.to_owned();
    let path = d.str()?.to_owned();
    let query = d.str()?.to_owned();
    let content_type = d.str()?.to_owned();
    let n = d.u32()? as usize;
    let mut headers = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        headers.push((d.str()?.to_owned(), d.str()?.to_owned()));
    }
    Ok((
        method,
        path,
        query,
        content_type,
        headers,
        d.str()?,
        d.str()?,
    ))
}

/// The same from a compact head.
fn compact_rest<'a>(d: &mut Dec<'a>, c: u8, webhook_id: &str) -> Result<Rest<'a>, Corrupt> {
    let method = d.vstr()?.to_owned();
    let path = if c & C_DEFAULT_PATH != 0 {
        format!("/webhook/{webhook_id}")
    } else {
        d.vstr()?.to_owned()
    };
    let query = d.vstr()?.to_owned();
    let n = d.varint()?;
    let mut headers = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let name = match d.varint()? {
            0 => d.vstr()?,
            k => KNOWN_HEADERS
                .get(k as usize - 1)
                .ok_or(Corrupt("unknown header code"))?,
        };
        headers.push((name.to_owned(), d.vstr()?.to_owned()));
    }
    let content_type = if c & C_CT_HEADER != 0 {
        headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.clone())
            .ok_or(Corrupt("content type header missing"))?
    } else {
        d.vstr()?.to_owned()
    };
    Ok((
        method,
        path,
        query,
        content_type,
        headers,
        d.vstr()?,
        d.vstr()?,
    ))
}

/// A decoded state record.
pub(super) struct StateRec {
    pub chan_id: u64,
    pub seq: u64,
    pub attempts: Attempts,
    pub place: PlaceDisk,
}

pub(super) fn decode_state(head: &[u8]) -> Result<StateRec, Corrupt> {
    let mut d = Dec(head);
    let chan_id = d.u64()?;
    let seq = d.u64()?;
    let delivery_count = d.u32()?;
    let first_attempt_at = d.time()?;
    let last_attempt_at = d.time()?;
    let tag = d.u8()?;
    let t = Timestamp::from_micros(d.i64()?);
    let reason = d.u8()?;
    let place = match tag {
        0 => PlaceDisk::Ready,
        1 => PlaceDisk::Delayed { until: t },
        2 => PlaceDisk::Dead {
            reason: reason_of(reason)?,
            at: t,
        },
        _ => return Err(Corrupt("unknown place")),
    };
    let last_error = match d.u8()? {
        0 => None,
        _ => Some(d.str()?.to_owned()),
    };
    Ok(StateRec {
        chan_id,
        seq,
        attempts: Attempts {
            delivery_count,
            first_attempt_at,
            last_attempt_at,
            last_error,
        },
        place,
    })
}

/// (channel id, sequence) of a settle record.
pub(super) fn decode_settle(head: &[u8]) -> Result<(u64, u64), Corrupt> {
    let mut d = Dec(head);
    Ok((d.u64()?, d.u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> StoredMessage {
        StoredMessage {
            message_id: "msg_0123456789abcdef".into(),
            channel: "alpha".into(),
            webhook_id: "hook".into(),
            namespace: Some("ns".into()),
            sequence: 0,
            received_at: Timestamp::from_micros(1_770_000_000_000_001),
            expires_at: Timestamp::from_micros(1_770_000_100_000_001),
            method: "POST".into(),
            path: "/webhook/ns/hook".into(),
            query: "a=1&b=%C3%A9".into(),
            raw_headers: Some(vec![("X-A".into(), "1".into()), ("x-a".into(), "2".into())]),
            body: Some((0u8..=255).collect()),
            payload: Some(serde_json::json!({"k": [1, 2.5, "x"]})),
            masked_headers: Some(serde_json::from_str(r#"{"authorization":"***"}"#).unwrap()),
            content_type: Some("application/octet-stream".into()),
            is_json: false,
        }
    }

    fn split(rec: &[u8]) -> (Frame, &[u8], &[u8]) {
        let f: [u8; FRAME] = rec[..FRAME].try_into().unwrap();
        let frame = Frame::parse(&f).unwrap();
        let head = &rec[FRAME..FRAME + frame.head_len as usize];
        frame.check(&f, head, None).unwrap();
        (frame, head, &rec[FRAME + frame.head_len as usize..])
    }

    #[test]
    fn a_message_round_trips_byte_for_byte() {
        let m = msg();
        let rec = message_record(7, 42, &m);
        let (frame, head, body) = split(&rec);
        assert_eq!(frame.total() as usize, rec.len());
        let back = decode_message(head, body, "alpha").unwrap();
        assert_eq!(back, StoredMessage { sequence: 42, ..m });
        let idx = message_index(head).unwrap();
        assert_eq!((idx.chan_id, idx.seq, idx.namespace), (7, 42, Some("ns")));
    }

    /// A webhook as the ingress stores it: a cloud-made id, the default path, the content
    /// type also in the headers, usual header names.
    fn webhook() -> StoredMessage {
        StoredMessage {
            message_id: "msg_00ff00ff00ff00ff".into(),
            webhook_id: "github".into(),
            namespace: None,
            path: "/webhook/github".into(),
            query: String::new(),
            raw_headers: Some(vec![
                ("host".into(), "hooks.example.com".into()),
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), "256".into()),
                ("x-custom".into(), "é".into()),
            ]),
            body: Some(vec![b'{'; 256]),
            payload: None,
            masked_headers: None,
            content_type: Some("application/json".into()),
            is_json: true,
            ..msg()
        }
    }

    #[test]
    fn the_compact_head_round_trips_and_the_fixed_layout_still_reads() {
        for m in [msg(), webhook()] {
            let compact = message_record(7, 42, &m);
            let fixed = message_record_fixed(7, 42, &m);
            for rec in [&compact, &fixed] {
                let (_, head, body) = split(rec);
                let back = decode_message(head, body, "alpha").unwrap();
                assert_eq!(
                    back,
                    StoredMessage {
                        sequence: 42,
                        ..m.clone()
                    }
                );
                let idx = message_index(head).unwrap();
                assert_eq!(idx.message_id, m.message_id);
                assert_eq!(idx.expires_at, m.expires_at);
                assert_eq!(idx.webhook_id, m.webhook_id);
            }
            assert!(compact.len() < fixed.len());
        }
        // What the compact head saves on a typical webhook.
        let w = webhook();
        let saved = message_record_fixed(1, 1, &w).len() - message_record(1, 1, &w).len();
        assert!(saved >= 80, "{saved} bytes saved");
        // Near-misses of each shortcut are stored in full and still round-trip.
        let mut odd = webhook();
        odd.message_id = "msg_00FF00FF00FF00FF".into();
        odd.path = "/webhook/github/".into();
        odd.content_type = Some("text/plain".into());
        odd.expires_at = Timestamp::from_micros(odd.received_at.micros() - 5);
        let rec = message_record(1, 1, &odd);
        let (_, head, body) = split(&rec);
        assert_eq!(
            decode_message(head, body, "alpha").unwrap(),
            StoredMessage { sequence: 1, ..odd }
        );
    }

    #[test]
    fn absent_and_empty_are_told_apart() {
        let mut m = msg();
        m.body = None;
        m.raw_headers = None;
        m.payload = None;
        m.masked_headers = None;
        m.namespace = None;
        m.content_type = None;
        m.is_json = true;
        let rec = message_record(1, 1, &m);
        let (_, head, body) = split(&rec);
        assert_eq!(
            decode_message(head, body, "alpha").unwrap(),
            StoredMessage {
                sequence: 1,
                ..m.clone()
            }
        );
        m.body = Some(Vec::new());
        m.raw_headers = Some(Vec::new());
        let rec = message_record(1, 1, &m);
        let (_, head, body) = split(&rec);
        assert_eq!(
            decode_message(head, body, "alpha").unwrap(),
            StoredMessage { sequence: 1, ..m }
        );
    }

    #[test]
    fn a_flipped_body_byte_is_detected() {
        let mut rec = message_record(1, 1, &msg());
        let last = rec.len() - 1;
        rec[last] ^= 1;
        let (_, head, body) = split(&rec);
        assert!(decode_message(head, body, "alpha").is_err());
    }

    #[test]
    fn a_flipped_head_byte_or_zeroes_fail_the_frame() {
        let mut rec = message_record(1, 1, &msg());
        rec[FRAME + 3] ^= 1;
        let f: [u8; FRAME] = rec[..FRAME].try_into().unwrap();
        let frame = Frame::parse(&f).unwrap();
        assert!(
            frame
                .check(&f, &rec[FRAME..FRAME + frame.head_len as usize], None)
                .is_err()
        );
        assert!(Frame::parse(&[0; FRAME]).is_err());
    }

    #[test]
    fn a_sealed_record_reads_only_in_its_own_segment_life() {
        let rec = message_record(1, 2, &msg());
        let mut sealed = rec.clone();
        seal(&mut sealed, 42);
        assert_ne!(sealed, rec);
        let head_of = |r: &[u8]| {
            let f: [u8; FRAME] = r[..FRAME].try_into().unwrap();
            let frame = Frame::parse(&f).unwrap();
            (frame, f, r[FRAME..FRAME + frame.head_len as usize].to_vec())
        };
        let (frame, f, head) = head_of(&sealed);
        assert!(frame.check(&f, &head, Some(42)).is_ok());
        assert!(frame.check(&f, &head, Some(43)).is_err(), "another life");
        assert!(frame.check(&f, &head, None).is_err(), "an unsealed segment");
        let (frame, f, head) = head_of(&rec);
        assert!(frame.check(&f, &head, None).is_ok());
        assert!(
            frame.check(&f, &head, Some(42)).is_err(),
            "an unsealed record in a sealed segment"
        );
        // Readers get the record back as the encoder made it.
        let mut back = sealed.clone();
        unseal(&mut back, Some(42)).unwrap();
        assert_eq!(back, rec);
        assert!(unseal(&mut sealed.clone(), Some(7)).is_err());
        let mut legacy = rec.clone();
        unseal(&mut legacy, None).unwrap();
        assert_eq!(legacy, rec);
        // The header carries the segment and the salt, and is never sealed.
        let mut h = segment_header(9, 42);
        assert_eq!(h.len() as u64, SEGMENT_START);
        seal(&mut h, 5);
        let (frame, f, head) = head_of(&h);
        assert!(frame.check(&f, &head, None).is_ok());
        assert_eq!(decode_segment_header(&head).unwrap(), (9, 42));
    }

    /// Whatever a damaged disk hands back, decoding answers an error, never a panic: every
    /// record kind, cut at every length and with every byte flipped, plus random bytes.
    #[test]
    fn damaged_records_are_errors_not_panics() {
        use rand::{Rng, SeedableRng};
        let records = [
            message_record(1, 2, &msg()),
            message_record(1, 2, &webhook()),
            message_record_fixed(1, 2, &msg()),
            state_record(
                1,
                2,
                &Attempts {
                    delivery_count: 1,
                    first_attempt_at: None,
                    last_attempt_at: None,
                    last_error: Some("x".into()),
                },
                PlaceDisk::Ready,
            ),
            settle_record(1, 2),
            segment_header(3, 9),
            {
                let mut r = message_record(1, 2, &webhook());
                seal(&mut r, 9);
                r
            },
        ];
        let decode_all = |rec: &[u8]| {
            let _ = decode_message_record(rec, "c");
            if let Ok((head, body)) = split_record(rec) {
                let _ = decode_message(head, body, "c");
                let _ = message_index(head);
                let _ = decode_state(head);
                let _ = decode_settle(head);
            }
            if let Some(f) = rec
                .get(..FRAME)
                .and_then(|b| <&[u8; FRAME]>::try_from(b).ok())
            {
                let _ = Frame::parse(f);
            }
            for salt in [None, Some(9)] {
                let _ = unseal(&mut rec.to_vec(), salt);
            }
            let _ = decode_segment_header(rec);
            // The heads alone, as the start-up scan hands them over.
            let _ = message_index(rec);
            let _ = decode_state(rec);
            let _ = decode_settle(rec);
        };
        for rec in &records {
            for cut in 0..rec.len() {
                decode_all(&rec[..cut]);
            }
            for i in 0..rec.len() {
                for bit in [1u8, 0x80, 0xFF] {
                    let mut r = rec.clone();
                    r[i] ^= bit;
                    decode_all(&r);
                }
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let n = rng.random_range(0..200);
            let mut r: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            if r.len() >= FRAME && rng.random_bool(0.5) {
                // A plausible frame in front of random bytes.
                r[..2].copy_from_slice(&MAGIC.to_le_bytes());
                r[2] = rng.random_range(1..=5);
                r[3] = rng.random_range(0..=1);
            }
            decode_all(&r);
        }
    }

    #[test]
    fn states_round_trip() {
        let attempts = Attempts {
            delivery_count: 3,
            first_attempt_at: Some(Timestamp::from_micros(5)),
            last_attempt_at: None,
            last_error: Some("HTTP 500 é".into()),
        };
        for place in [
            PlaceDisk::Ready,
            PlaceDisk::Delayed {
                until: Timestamp::from_micros(9),
            },
            PlaceDisk::Dead {
                reason: DeadLetterReason::MaxDeliveryAttempts,
                at: Timestamp::from_micros(11),
            },
        ] {
            let rec = state_record(3, 4, &attempts, place);
            let (_, head, _) = split(&rec);
            let s = decode_state(head).unwrap();
            assert_eq!(
                (s.chan_id, s.seq, &s.attempts, s.place),
                (3, 4, &attempts, place)
            );
        }
        let rec = settle_record(8, 9);
        let (_, head, _) = split(&rec);
        assert_eq!(decode_settle(head).unwrap(), (8, 9));
    }
}
