//! Reading the audit trail back, for `rmcp-authz audit query|stats|tail --postgres`: every
//! chain's records in the order they were recorded (one sorted scan, read through a
//! cursor a page at a time), and the records each chain gained since a cursor (through
//! the chains' heads and the primary key, without scanning the table).

use std::collections::HashMap;
use std::time::SystemTime;

use tokio_postgres::{Client, Transaction};

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

fn stored(row: &tokio_postgres::Row) -> StoredRecord {
    StoredRecord {
        at: row.get(0),
        chain: row.get(1),
        seq: row.get(2),
        record: row.get(3),
    }
}

/// Opens a cursor over every record, ordered by time, chain and sequence number, in
/// `transaction` (read with [`fetch`]).
pub(crate) async fn open_cursor(
    transaction: &Transaction<'_>,
) -> Result<(), tokio_postgres::Error> {
    transaction
        .batch_execute(
            "DECLARE rmcp_authz_records NO SCROLL CURSOR FOR
             SELECT recorded_at, chain_id, seq, record FROM rmcp_authz_audit
             ORDER BY recorded_at, chain_id, seq",
        )
        .await
}

/// The next `count` records of the cursor ([`open_cursor`]); fewer at its end.
pub(crate) async fn fetch(
    transaction: &Transaction<'_>,
    count: i64,
) -> Result<Vec<StoredRecord>, tokio_postgres::Error> {
    let rows = transaction
        .query(&format!("FETCH {count} FROM rmcp_authz_records"), &[])
        .await?;
    Ok(rows.iter().map(stored).collect())
}

/// The records each chain gained after the sequence numbers in `ends` (a chain not in
/// it, from its start), in time order; `ends` moves past them.
pub(crate) async fn since(
    client: &Client,
    ends: &mut HashMap<String, i64>,
) -> Result<Vec<StoredRecord>, tokio_postgres::Error> {
    let heads = client
        .query(
            "SELECT chain_id, last_seq FROM rmcp_authz_audit_chains",
            &[],
        )
        .await?;
    let mut records = Vec::new();
    for head in &heads {
        let chain: String = head.get(0);
        let last: i64 = head.get(1);
        let after = ends.get(&chain).copied().unwrap_or(0);
        if last <= after {
            continue;
        }
        let rows = client
            .query(
                "SELECT recorded_at, chain_id, seq, record FROM rmcp_authz_audit
                 WHERE chain_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                &[&chain, &after, &last],
            )
            .await?;
        records.extend(rows.iter().map(stored));
        ends.insert(chain, last);
    }
    records.sort_by(|a, b| (a.at, &a.chain, a.seq).cmp(&(b.at, &b.chain, b.seq)));
    Ok(records)
}
