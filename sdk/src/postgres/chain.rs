//! Verifying the audit chains in the database: each replica's chain on its own, row by
//! row in sequence order, against its head, and against saved anchors.

use std::fmt;

use serde_json::Value;

use super::connect::{Database, PostgresError};
use crate::audit::{GENESIS_HASH, line_hash};

/// Rows read per query.
const PAGE: i64 = 5000;

/// What to verify, and how strictly.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PgVerifyOptions {
    /// Only this chain (default: every chain in the database).
    pub chain: Option<String>,
    /// Accept chains whose first rows were deleted on purpose (old records pruned): the
    /// first row left may then continue an earlier record. Without it, a chain must start
    /// at record 1 with the genesis hash.
    pub rotated: bool,
    /// Saved anchors: `(chain, hash)`, the hash of a record an operator kept (a
    /// `last_hash` of an earlier verification). The chain must still hold that record:
    /// when its newest records are deleted or rewritten, it does not.
    pub anchors: Vec<(String, String)>,
}

impl PgVerifyOptions {
    /// Verifies only `chain`.
    #[must_use]
    pub fn chain(mut self, chain: impl Into<String>) -> Self {
        self.chain = Some(chain.into());
        self
    }

    /// See [`PgVerifyOptions::rotated`].
    #[must_use]
    pub fn rotated(mut self, rotated: bool) -> Self {
        self.rotated = rotated;
        self
    }

    /// Adds an anchor for `chain`.
    #[must_use]
    pub fn anchor(mut self, chain: impl Into<String>, hash: impl Into<String>) -> Self {
        self.anchors
            .push((chain.into(), hash.into().trim().to_ascii_lowercase()));
        self
    }
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgChainReport {
    /// The chain id.
    pub chain: String,
    /// Records checked.
    pub records: u64,
    /// The sequence number of its first row (1 unless older rows were pruned).
    pub first_seq: i64,
    /// The sequence number of its last row.
    pub last_seq: i64,
    /// The hash of its last record: save it as an anchor.
    pub last_hash: String,
    /// Whether an anchor was given for it and found (`None`: no anchor given).
    pub anchor_found: Option<bool>,
}

/// What kind of break a [`ChainBreak`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainBreakKind {
    /// A record's `prev_hash` is not the hash of the record before it: one of them was
    /// edited, or rows were reordered.
    Broken,
    /// A record is not a JSON object with a `prev_hash`.
    Malformed,
    /// Sequence numbers skip: rows were deleted.
    Gap,
    /// The chain does not start at record 1 with the genesis hash, and `rotated` was not
    /// given: its first records were deleted.
    MissingStart,
    /// The head (`rmcp_authz_audit_chains`) does not name the last row: the newest
    /// records were deleted or changed, or the head was.
    Head,
    /// A saved anchor is not in the chain: its newest records were dropped or rewritten.
    AnchorMissing,
}

impl ChainBreakKind {
    /// The kind as a word, for machine output (`broken`, `malformed`, `gap`,
    /// `missing_start`, `head`, `anchor_missing`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChainBreakKind::Broken => "broken",
            ChainBreakKind::Malformed => "malformed",
            ChainBreakKind::Gap => "gap",
            ChainBreakKind::MissingStart => "missing_start",
            ChainBreakKind::Head => "head",
            ChainBreakKind::AnchorMissing => "anchor_missing",
        }
    }
}

/// Where and why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainBreak {
    /// The chain id.
    pub chain: String,
    /// The sequence number of the first record at fault, when one is.
    pub seq: Option<i64>,
    /// The kind of break.
    pub kind: ChainBreakKind,
    /// What was found, in words.
    pub detail: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "chain {:?} record {seq}: {}", self.chain, self.detail),
            None => write!(f, "chain {:?}: {}", self.chain, self.detail),
        }
    }
}

impl std::error::Error for ChainBreak {}

/// Verifies the audit chains of `database` (or the one `options` names), each on its
/// own: rows in sequence order with no gap, each record's `prev_hash` the hash of the
/// record before it, the first at record 1 with the genesis hash (unless `rotated`), the
/// last where the chain's head says, and every anchor given found. One result per chain,
/// in chain id order.
///
/// # Errors
/// A [`PostgresError`] when the database cannot be read (or a chain named does not exist).
pub async fn verify_chains(
    database: &Database,
    options: &PgVerifyOptions,
) -> Result<Vec<Result<PgChainReport, ChainBreak>>, PostgresError> {
    let mut client = database.connect().await?;
    database.check_schema(&client).await?;
    let fail = |e: tokio_postgres::Error| database.query_error(&e);
    // One snapshot: heads and rows as they were together, whatever replicas write meanwhile.
    let client = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(fail)?;
    let rows = client
        .query(
            "SELECT c.chain_id, h.last_seq, h.last_hash
             FROM (SELECT chain_id FROM rmcp_authz_audit_chains
                   UNION SELECT DISTINCT chain_id FROM rmcp_authz_audit) c
             LEFT JOIN rmcp_authz_audit_chains h USING (chain_id)
             WHERE $1::text IS NULL OR c.chain_id = $1
             ORDER BY c.chain_id",
            &[&options.chain],
        )
        .await
        .map_err(fail)?;
    if rows.is_empty()
        && let Some(chain) = &options.chain
    {
        return Err(PostgresError::Chain {
            chain: chain.clone(),
            reason: "no such chain in the database".to_owned(),
        });
    }
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let chain: String = row.get(0);
        let head: Option<(i64, String)> = match (row.get(1), row.get(2)) {
            (Some(seq), Some(hash)) => Some((seq, hash)),
            _ => None,
        };
        let mut check = Check::new(&chain, options);
        let mut after = 0_i64;
        loop {
            let page = client
                .query(
                    "SELECT seq, record FROM rmcp_authz_audit
                     WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&chain, &after, &PAGE],
                )
                .await
                .map_err(fail)?;
            for row in &page {
                let seq: i64 = row.get(0);
                let record: &str = row.get(1);
                check.record(seq, record);
                after = seq;
            }
            if check.failed.is_some() || page.len() < PAGE as usize {
                break;
            }
        }
        results.push(check.finish(head));
    }
    Ok(results)
}

/// The state of one chain's verification.
struct Check<'a> {
    chain: &'a str,
    rotated: bool,
    anchor: Option<&'a str>,
    anchor_found: bool,
    records: u64,
    first_seq: Option<i64>,
    last: Option<(i64, String)>,
    failed: Option<ChainBreak>,
}

impl<'a> Check<'a> {
    fn new(chain: &'a str, options: &'a PgVerifyOptions) -> Check<'a> {
        Check {
            chain,
            rotated: options.rotated,
            anchor: options
                .anchors
                .iter()
                .find(|(c, _)| c == chain)
                .map(|(_, h)| h.as_str()),
            anchor_found: false,
            records: 0,
            first_seq: None,
            last: None,
            failed: None,
        }
    }

    fn fail(&mut self, seq: Option<i64>, kind: ChainBreakKind, detail: String) {
        if self.failed.is_none() {
            self.failed = Some(ChainBreak {
                chain: self.chain.to_owned(),
                seq,
                kind,
                detail,
            });
        }
    }

    fn record(&mut self, seq: i64, record: &str) {
        if self.failed.is_some() {
            return;
        }
        let prev = serde_json::from_str::<Value>(record).ok().and_then(|v| {
            v.get("prev_hash")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let Some(prev) = prev else {
            return self.fail(
                Some(seq),
                ChainBreakKind::Malformed,
                "not an audit record (a JSON object with a prev_hash)".to_owned(),
            );
        };
        match &self.last {
            None => {
                self.first_seq = Some(seq);
                let at_start = seq == 1 && prev == GENESIS_HASH;
                if !at_start && !self.rotated {
                    return self.fail(
                        Some(seq),
                        ChainBreakKind::MissingStart,
                        if seq == 1 {
                            format!("the first record's prev_hash is {prev}, not the genesis hash")
                        } else {
                            format!(
                                "the chain starts at record {seq}: its earlier records were deleted (pass --rotated if they were pruned on purpose)"
                            )
                        },
                    );
                }
            }
            Some((last_seq, last_hash)) => {
                if seq != last_seq + 1 {
                    return self.fail(
                        Some(seq),
                        ChainBreakKind::Gap,
                        format!(
                            "records {} to {} are missing: rows were deleted",
                            last_seq + 1,
                            seq - 1
                        ),
                    );
                }
                if *last_hash != prev {
                    return self.fail(
                        Some(seq),
                        ChainBreakKind::Broken,
                        format!(
                            "the chain is broken: prev_hash is {prev}, the previous record hashes to {last_hash}"
                        ),
                    );
                }
            }
        }
        let hash = line_hash(record.as_bytes());
        if self.anchor == Some(hash.as_str()) {
            self.anchor_found = true;
        }
        self.records += 1;
        self.last = Some((seq, hash));
    }

    fn finish(mut self, head: Option<(i64, String)>) -> Result<PgChainReport, ChainBreak> {
        if self.failed.is_none() {
            let (last_seq, last_hash) = self
                .last
                .clone()
                .unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
            match &head {
                None => self.fail(
                    None,
                    ChainBreakKind::Head,
                    "the chain has records but no head in rmcp_authz_audit_chains".to_owned(),
                ),
                Some((seq, hash)) if *seq != last_seq || *hash != last_hash => self.fail(
                    Some(*seq),
                    ChainBreakKind::Head,
                    format!(
                        "its head names record {seq} (hash {hash}), but the last record is {last_seq} (hash {last_hash}): the newest records were deleted or changed"
                    ),
                ),
                Some(_) => {}
            }
            if let Some(anchor) = self.anchor
                && !self.anchor_found
            {
                self.fail(
                    None,
                    ChainBreakKind::AnchorMissing,
                    format!(
                        "no record hashes to the anchor {anchor}: the records up to it were dropped or rewritten"
                    ),
                );
            }
        }
        if let Some(failed) = self.failed {
            return Err(failed);
        }
        let (last_seq, last_hash) = self.last.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
        Ok(PgChainReport {
            chain: self.chain.to_owned(),
            records: self.records,
            first_seq: self.first_seq.unwrap_or(0),
            last_seq,
            last_hash,
            anchor_found: self.anchor.map(|_| self.anchor_found),
        })
    }
}
