//! Reading the audit trail back, for `rmcp-authz audit query|stats|tail --postgres`: every
//! chain's records in the order they were recorded, a page at a time, and the records
//! added to each chain since a cursor.

use std::collections::HashMap;
use std::time::SystemTime;

use tokio_postgres::Client;

/// One stored record.
#[derive(Debug, Clone)]
pub(crate) struct StoredRecord {
    /// When it was recorded (the event's timestamp).
    pub(crate) at: SystemTime,
    /// Its chain.
    pub(crate) chain: String,
    /// Its place in the chain.
    pub(crate) seq: i64,
    /// The record, as a file line holds it.
    pub(crate) record: String,
}

/// Where a page ends: the next page starts after it.
pub(crate) type Cursor = (SystemTime, String, i64);

fn stored(row: &tokio_postgres::Row) -> StoredRecord {
    StoredRecord {
        at: row.get(0),
        chain: row.get(1),
        seq: row.get(2),
        record: row.get(3),
    }
}

/// Up to `limit` records after `after`, ordered by time, chain and sequence number.
pub(crate) async fn page(
    client: &Client,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<StoredRecord>, tokio_postgres::Error> {
    let rows = match after {
        None => {
            client
                .query(
                    "SELECT recorded_at, chain_id, seq, record FROM rmcp_authz_audit
                     ORDER BY recorded_at, chain_id, seq LIMIT $1",
                    &[&limit],
                )
                .await?
        }
        Some((at, chain, seq)) => {
            client
                .query(
                    "SELECT recorded_at, chain_id, seq, record FROM rmcp_authz_audit
                     WHERE (recorded_at, chain_id, seq) > ($1, $2, $3)
                     ORDER BY recorded_at, chain_id, seq LIMIT $4",
                    &[at, chain, seq, &limit],
                )
                .await?
        }
    };
    Ok(rows.iter().map(stored).collect())
}

/// The records each chain gained after the sequence numbers in `ends` (a chain not in
/// it, from its start), in time order; `ends` moves past them.
pub(crate) async fn since(
    client: &Client,
    ends: &mut HashMap<String, i64>,
) -> Result<Vec<StoredRecord>, tokio_postgres::Error> {
    let (chains, seqs): (Vec<String>, Vec<i64>) = ends.iter().map(|(c, s)| (c.clone(), *s)).unzip();
    let rows = client
        .query(
            "SELECT a.recorded_at, a.chain_id, a.seq, a.record
             FROM rmcp_authz_audit a
             LEFT JOIN unnest($1::text[], $2::bigint[]) AS e(chain_id, seq) USING (chain_id)
             WHERE a.seq > coalesce(e.seq, 0)
             ORDER BY a.recorded_at, a.chain_id, a.seq LIMIT 10000",
            &[&chains, &seqs],
        )
        .await?;
    let records: Vec<StoredRecord> = rows.iter().map(stored).collect();
    for r in &records {
        let end = ends.entry(r.chain.clone()).or_insert(0);
        *end = (*end).max(r.seq);
    }
    Ok(records)
}
