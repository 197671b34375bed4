//! The audit trail in PostgreSQL as a source of records (`--postgres URL`, feature
//! `postgres`): every replica's chain, merged in the order the events were recorded, read
//! a page at a time; and, for `tail -f`, what each chain gains.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::Client;

use super::Stop;
use super::filter::Filter;
use super::read::{Each, Record, parse_record};
use crate::postgres::Database;
use crate::postgres::read::{StoredRecord, fetch, open_cursor, since};

/// Records read per query.
const PAGE: i64 = 2000;

/// How often `tail -f` looks for new records.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The connection string `--postgres` names: the value itself, or, written `env:VAR`, the
/// value of environment variable `VAR` (which keeps a password off the command line).
pub(in crate::cli) fn database(arg: &str) -> Result<Database, String> {
    let parsed = match arg.strip_prefix("env:") {
        Some(var) => Database::from_env(var),
        None => Database::parse(arg),
    };
    parsed.map_err(|e| e.to_string())
}

/// A connection to the database, on a runtime of its own.
pub(super) struct Trail {
    runtime: Runtime,
    client: Client,
    database: Database,
}

impl Trail {
    /// Connects, and checks the schema.
    pub(super) fn open(database: &Database) -> Result<Trail, String> {
        let runtime = crate::cli::runtime()?;
        let client = runtime
            .block_on(async {
                let client = database.connect().await?;
                database.check_schema(&client).await?;
                Ok::<_, crate::postgres::PostgresError>(client)
            })
            .map_err(|e| e.to_string())?;
        Ok(Trail {
            runtime,
            client,
            database: database.clone(),
        })
    }

    fn failed(&self, e: &tokio_postgres::Error) -> Stop {
        Stop::Error(self.database.query_error(e).to_string())
    }

    /// Passes every record matching `filter`, in time order, to `each` until it breaks.
    pub(super) fn for_each(&mut self, filter: &Filter, each: &mut Each<'_>) -> Result<(), Stop> {
        self.for_each_tracking(filter, &mut HashMap::new(), each)
    }

    /// [`Trail::for_each`], noting in `ends` the last sequence number read of each chain
    /// (matching or not): where [`Trail::follow`] goes on from.
    pub(super) fn for_each_tracking(
        &mut self,
        filter: &Filter,
        ends: &mut HashMap<String, i64>,
        each: &mut Each<'_>,
    ) -> Result<(), Stop> {
        let Trail {
            runtime,
            client,
            database,
        } = self;
        let failed = |e: tokio_postgres::Error| Stop::Error(database.query_error(&e).to_string());
        runtime.block_on(async {
            // A read-only snapshot: the records as they were when the command started.
            let transaction = client
                .build_transaction()
                .read_only(true)
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .start()
                .await
                .map_err(failed)?;
            open_cursor(&transaction).await.map_err(failed)?;
            loop {
                let records = fetch(&transaction, PAGE).await.map_err(failed)?;
                let full = records.len() as i64 == PAGE;
                if pass(records, filter, Some(ends), each)?.is_break() || !full {
                    return Ok(());
                }
            }
        })
    }

    /// Passes the records each chain gains after `ends` to `each`, polling until killed.
    pub(super) fn follow(
        &self,
        mut ends: HashMap<String, i64>,
        filter: &Filter,
        each: &mut Each<'_>,
    ) -> Result<(), Stop> {
        loop {
            let records = self
                .runtime
                .block_on(since(&self.client, &mut ends))
                .map_err(|e| self.failed(&e))?;
            if records.is_empty() {
                std::thread::sleep(POLL_INTERVAL);
            } else if pass(records, filter, None, each)?.is_break() {
                return Ok(());
            }
        }
    }
}

/// Parses `records` and passes those matching `filter` to `each`, noting each chain's
/// last sequence number in `ends`.
fn pass(
    records: Vec<StoredRecord>,
    filter: &Filter,
    mut ends: Option<&mut HashMap<String, i64>>,
    each: &mut Each<'_>,
) -> Result<ControlFlow<()>, Stop> {
    for stored in records {
        if let Some(ends) = ends.as_deref_mut() {
            // Records come in time order, not always in chain order: keep the highest.
            let end = ends.entry(stored.chain.clone()).or_insert(0);
            *end = (*end).max(stored.seq);
        }
        let name = format!("postgres chain {:?}", stored.chain);
        let number = usize::try_from(stored.seq).unwrap_or(usize::MAX);
        let record: Record = parse_record(stored.record.into_bytes(), &name, number)?;
        if filter.matches(&record) && each(record)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// `audit verify --postgres`: every chain of the database (or `chain`), each on its own;
/// exit 1 when one is broken.
pub(in crate::cli) fn verify_postgres(
    database: &Database,
    chain: Option<String>,
    anchor: Option<String>,
    rotated: bool,
    as_json: bool,
) -> Result<crate::cli::Outcome, String> {
    use crate::postgres::{PgVerifyOptions, verify_chains};
    use serde_json::json;

    let mut options = PgVerifyOptions::default().rotated(rotated);
    match (&chain, anchor) {
        (Some(chain), Some(anchor)) => options = options.chain(chain).anchor(chain, anchor),
        (Some(chain), None) => options = options.chain(chain),
        (None, Some(_)) => {
            return Err("an anchor belongs to one chain: name it with --chain".to_owned());
        }
        (None, None) => {}
    }
    let results = crate::cli::runtime()?
        .block_on(verify_chains(database, &options))
        .map_err(|e| e.to_string())?;
    let intact = results.iter().all(Result::is_ok);
    if as_json {
        let chains: Vec<_> = results
            .iter()
            .map(|result| match result {
                Ok(report) => json!({
                    "chain": report.chain,
                    "intact": true,
                    "records": report.records,
                    "first_seq": report.first_seq,
                    "last_seq": report.last_seq,
                    "last_hash": report.last_hash,
                    "anchor_found": report.anchor_found,
                }),
                Err(broken) => json!({
                    "chain": broken.chain,
                    "intact": false,
                    "kind": broken.kind.as_str(),
                    "seq": broken.seq,
                    "error": broken.to_string(),
                }),
            })
            .collect();
        crate::cli::print_json(&json!({ "intact": intact, "chains": chains }));
    } else {
        if results.is_empty() {
            println!("no audit chains in {database}");
        }
        for result in &results {
            match result {
                Ok(report) => println!(
                    "chain {:?}: {} records, chain intact (last hash {})",
                    report.chain, report.records, report.last_hash
                ),
                Err(broken) => println!("BROKEN: {broken}"),
            }
        }
    }
    Ok(if intact {
        crate::cli::Outcome::Ok
    } else {
        crate::cli::Outcome::Refused
    })
}
