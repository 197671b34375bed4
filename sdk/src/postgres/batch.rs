//! A batch of audit records for the PostgreSQL sink: serialized and chained after a given
//! record, with the columns of its rows, and chained again after another record when the
//! chain turns out to end elsewhere.

use std::time::SystemTime;

use crate::audit::{AuditError, AuditEvent, append_record, line_hash};

/// One batch, serialized and chained after a given head.
pub(super) struct Batch {
    pub(super) base_seq: i64,
    pub(super) base_hash: [u8; 64],
    pub(super) seqs: Vec<i64>,
    pub(super) times: Vec<SystemTime>,
    pub(super) lines: Vec<String>,
    pub(super) last_seq: i64,
    pub(super) last_hash: [u8; 64],
}

/// Serializes `events` as records chained after record `seq` whose hash is `hash`.
pub(super) fn chain_batch(
    buffer: &mut Vec<u8>,
    events: &[AuditEvent],
    mut seq: i64,
    hash: &[u8; 64],
) -> Result<Batch, AuditError> {
    let mut batch = Batch {
        base_seq: seq,
        base_hash: *hash,
        seqs: Vec::with_capacity(events.len()),
        times: Vec::with_capacity(events.len()),
        lines: Vec::with_capacity(events.len()),
        last_seq: seq,
        last_hash: *hash,
    };
    for event in events {
        buffer.clear();
        batch.last_hash = append_record(buffer, event, &batch.last_hash)?;
        buffer.pop(); // the newline
        let line = String::from_utf8(std::mem::take(buffer))
            .map_err(|_| AuditError::Serialize("not UTF-8".to_owned()))?;
        seq += 1;
        batch.seqs.push(seq);
        batch.times.push(
            humantime::parse_rfc3339_weak(&event.timestamp).unwrap_or_else(|_| SystemTime::now()),
        );
        batch.lines.push(line);
    }
    batch.last_seq = seq;
    Ok(batch)
}

impl Batch {
    /// The same records chained after record `seq` whose hash is `hash`: each line's
    /// `prev_hash`, its last field, replaced.
    pub(super) fn rechain(&self, mut seq: i64, hash: &[u8; 64]) -> Result<Batch, AuditError> {
        // `"prev_hash":"<64 hex>"}` ends every line this sink makes.
        const TAIL: usize = 64 + 2;
        let mut batch = Batch {
            base_seq: seq,
            base_hash: *hash,
            seqs: Vec::with_capacity(self.lines.len()),
            times: self.times.clone(),
            lines: Vec::with_capacity(self.lines.len()),
            last_seq: seq,
            last_hash: *hash,
        };
        for line in &self.lines {
            let body = line
                .len()
                .checked_sub(TAIL)
                .and_then(|cut| line.get(..cut))
                .filter(|body| body.ends_with("\"prev_hash\":\""))
                .ok_or_else(|| {
                    AuditError::Serialize("a record without its prev_hash".to_owned())
                })?;
            let mut rechained = String::with_capacity(line.len());
            rechained.push_str(body);
            rechained.push_str(&hash_text(&batch.last_hash));
            rechained.push_str("\"}");
            batch.last_hash = line_hash(rechained.as_bytes())
                .as_bytes()
                .try_into()
                .map_err(|_| AuditError::Serialize("a hash that is not SHA-256 hex".to_owned()))?;
            seq += 1;
            batch.seqs.push(seq);
            batch.lines.push(rechained);
        }
        batch.last_seq = seq;
        Ok(batch)
    }
}

/// A hash array as text.
pub(super) fn hash_text(hash: &[u8; 64]) -> String {
    String::from_utf8_lossy(hash).into_owned()
}
