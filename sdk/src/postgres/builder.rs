//! [`PostgresSinkBuilder`]: the settings of a [`PostgresSink`], and opening it: connecting,
//! the schema, and where this replica's chain ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::connect::{Database, PostgresError, migrate};
use super::sink::{APPEND, Connected, PostgresSink, State, read_head};
use crate::audit::{GENESIS_HASH, line_hash};

/// Settings of a [`PostgresSink`], from [`PostgresSink::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresSinkBuilder {
    database: Database,
    chain: String,
    migrate: bool,
    give_up_after: Option<Duration>,
    overlap: bool,
}

impl PostgresSinkBuilder {
    /// Settings for a sink on `database` writing `chain`, with the defaults.
    pub(super) fn new(database: Database, chain: String) -> Self {
        PostgresSinkBuilder {
            database,
            chain,
            migrate: false,
            give_up_after: None,
            overlap: true,
        }
    }

    /// Applies the schema migrations at start when the database lacks them (default:
    /// off, and a database without the schema is an error).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Fails a batch that could not be written for this long, instead of trying again
    /// until it is (the default). Set it with `fail_closed`, so requests are refused
    /// while the database is away rather than held.
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = Some(limit);
        self
    }

    /// In buffered mode, send a batch and serialize the next while its statement runs
    /// (default: on). The writer then counts a batch written once it is sent; its commit
    /// is confirmed before the next batch is sent and at every flush, and a failed batch
    /// is written again. Turn it off with `fail_closed`, so that a request under
    /// `fail_closed` is answered only after its batch's commit (the configuration does);
    /// [`give_up_after`](PostgresSinkBuilder::give_up_after) turns it off too.
    pub fn overlap(mut self, overlap: bool) -> Self {
        self.overlap = overlap;
        self
    }

    /// Connects, checks (or migrates) the schema, and finds where this replica's chain
    /// ends. May be called from async code: the work runs on a thread of its own.
    ///
    /// # Errors
    /// [`PostgresError::Connect`], [`PostgresError::Schema`], [`PostgresError::Query`];
    /// [`PostgresError::Chain`] when the chain's head does not name its last row.
    pub fn connect(self) -> Result<PostgresSink, PostgresError> {
        if self.chain.is_empty() {
            return Err(PostgresError::Chain {
                chain: self.chain,
                reason: "the chain id is empty".to_owned(),
            });
        }
        // One worker: a buffered batch's statement runs there while the writer thread
        // serializes the next batch.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("rmcp-authz-postgres")
            .build()
            .map_err(PostgresError::Thread)?;
        let opened = std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(self.open()))
                .join()
                .unwrap_or_else(|_| {
                    Err(PostgresError::Thread(std::io::Error::other(
                        "the connecting thread panicked",
                    )))
                })
        });
        let (connected, last_seq, last_hash) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        Ok(PostgresSink {
            database: self.database,
            chain: self.chain,
            give_up_after: self.give_up_after,
            overlap: self.overlap,
            runtime: Some(runtime),
            state: Mutex::new(State {
                connection: Some(connected),
                last_seq,
                last_hash,
                uncertain: None,
                in_flight: None,
                buffer: Vec::new(),
            }),
        })
    }

    async fn open(&self) -> Result<(Connected, i64, [u8; 64]), PostgresError> {
        let database = &self.database;
        let fail = |e: tokio_postgres::Error| database.query_error(&e);
        let mut client = database.connect().await?;
        if self.migrate {
            migrate(database, &mut client).await?;
        } else {
            database.check_schema(&client).await?;
        }
        client
            .execute(
                "INSERT INTO rmcp_authz_audit_chains (chain_id, last_seq, last_hash) VALUES ($1, 0, $2)
                 ON CONFLICT (chain_id) DO NOTHING",
                &[&self.chain, &GENESIS_HASH],
            )
            .await
            .map_err(fail)?;
        let (last_seq, head_hash) = read_head(&client, &self.chain).await.map_err(fail)?;
        let last = client
            .query_opt(
                "SELECT seq, record FROM rmcp_authz_audit WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
                &[&self.chain],
            )
            .await
            .map_err(fail)?;
        let chain_error = |reason: String| PostgresError::Chain {
            chain: self.chain.clone(),
            reason,
        };
        match last {
            None if last_seq == 0 && head_hash == GENESIS_HASH => {}
            None => {
                return Err(chain_error(format!(
                    "its head names record {last_seq}, but the chain has no records"
                )));
            }
            Some(row) => {
                let seq: i64 = row.get(0);
                let record: &str = row.get(1);
                if seq != last_seq || line_hash(record.as_bytes()) != head_hash {
                    return Err(chain_error(format!(
                        "its head names record {last_seq}, but its last record is {seq}{}",
                        if seq == last_seq { ", changed" } else { "" }
                    )));
                }
            }
        }
        let last_hash: [u8; 64] = head_hash
            .as_bytes()
            .try_into()
            .map_err(|_| chain_error("its head's hash is not SHA-256 hex".to_owned()))?;
        let append = client.prepare(APPEND).await.map_err(fail)?;
        Ok((
            Connected {
                client: Arc::new(client),
                append,
                synchronous: None,
            },
            last_seq,
            last_hash,
        ))
    }
}
