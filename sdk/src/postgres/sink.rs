//! [`PostgresSink`]: audit events appended to `rmcp_authz_audit`, as one hash chain per
//! replica, one statement (one commit) per batch.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Runtime;
use tokio_postgres::{Client, Statement};

use super::connect::{Database, PostgresError, driver_message, migrate};
use crate::audit::{AuditError, AuditEvent, AuditSink, GENESIS_HASH, append_record, line_hash};

/// The first wait before a failed batch is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// The longest wait between two tries of a batch.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Appends a batch where the chain's head says the chain ends, and moves the head, in one
/// statement: a batch is written whole or not at all, and only by the process that knows
/// where its chain ends.
const APPEND: &str = "WITH head AS (
    UPDATE rmcp_authz_audit_chains SET last_seq = $2, last_hash = $3, updated_at = now()
    WHERE chain_id = $1 AND last_seq = $4 AND last_hash = $5
    RETURNING 1)
INSERT INTO rmcp_authz_audit (chain_id, seq, recorded_at, record)
SELECT $1, u.seq, u.at, u.record
FROM head, unnest($6::bigint[], $7::timestamptz[], $8::text[]) AS u(seq, at, record)";

const HEAD: &str = "SELECT last_seq, last_hash FROM rmcp_authz_audit_chains WHERE chain_id = $1";

/// Writes audit events to PostgreSQL, in table `rmcp_authz_audit`, as a hash chain of its
/// own: each replica of a server writes under its own chain id, and each chain verifies
/// on its own ([`verify_chains`](super::verify_chains)), so an edited, deleted or
/// reordered row is found. A row holds the record exactly as a JSON Lines file holds its
/// line, so `rmcp-authz audit` reads both alike.
///
/// Each batch the [`Auditor`](crate::audit::Auditor)'s writer hands over is one
/// statement and one commit: in `durable` mode a synchronous commit (the request is
/// answered once PostgreSQL has flushed it), in `buffered` mode an asynchronous one
/// (PostgreSQL flushes it within three `wal_writer_delay`s, 600 ms by default). When the
/// database cannot be reached, the batch is tried again with a backoff (50 ms doubling
/// to 2 s) on a new connection, for ever by default, so no event is lost while the
/// auditor's bounded queue holds the requests back; with
/// [`give_up_after`](PostgresSinkBuilder::give_up_after) the batch fails after that long
/// instead, which under `fail_closed` refuses the requests. A batch whose commit may or
/// may not have happened when the connection dropped is settled by reading the chain's
/// head before trying again: nothing is written twice.
///
/// At start the sink continues its chain where the database's head says it ends, after
/// checking that the last row is the one the head names; two processes given the same
/// chain id cannot both append (the second's first write fails).
pub struct PostgresSink {
    database: Database,
    chain: String,
    give_up_after: Option<Duration>,
    runtime: Option<Runtime>,
    state: Mutex<State>,
}

impl fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSink")
            .field("database", &self.database)
            .field("chain", &self.chain)
            .field("give_up_after", &self.give_up_after)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`PostgresSink`], from [`PostgresSink::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresSinkBuilder {
    database: Database,
    chain: String,
    migrate: bool,
    give_up_after: Option<Duration>,
}

struct State {
    connection: Option<Connected>,
    /// The chain's last sequence number and record hash, as committed.
    last_seq: i64,
    last_hash: [u8; 64],
    /// A batch that failed after it may have been committed (the connection dropped
    /// during the statement): its end, to compare with the head before the next write.
    uncertain: Option<(i64, [u8; 64])>,
    buffer: Vec<u8>,
}

struct Connected {
    client: Client,
    append: Statement,
    /// The session's `synchronous_commit`, once set.
    synchronous: Option<bool>,
}

/// One batch, serialized and chained after a given head.
struct Batch {
    seqs: Vec<i64>,
    times: Vec<SystemTime>,
    lines: Vec<String>,
    last_seq: i64,
    last_hash: [u8; 64],
}

/// Why an attempt failed.
enum Failure {
    /// Worth trying again (the database is away, restarting, or overloaded).
    Retry(AuditError),
    /// Trying again cannot help.
    Fatal(AuditError),
}

impl PostgresSink {
    /// Settings for a sink on `database` writing chain `chain`: give each replica its own
    /// chain id, the same across its restarts (a host name, a pod name).
    pub fn builder(database: Database, chain: impl Into<String>) -> PostgresSinkBuilder {
        PostgresSinkBuilder {
            database,
            chain: chain.into(),
            migrate: false,
            give_up_after: None,
        }
    }

    /// The chain this sink writes.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// The database it writes to.
    pub fn database(&self) -> &Database {
        &self.database
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn runtime(&self) -> &Runtime {
        // Only `Drop` takes it.
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the sink")
    }

    /// Runs `work` on the sink's runtime: here, from the writer thread (or any thread
    /// outside a runtime); from async code (a caller writing to the sink directly), on a
    /// thread of its own, since a runtime cannot block inside another.
    fn block_on<T: Send>(&self, work: impl Future<Output = T> + Send) -> T {
        let runtime = self.runtime();
        if tokio::runtime::Handle::try_current().is_err() {
            return runtime.block_on(work);
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(work))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn error(&self, message: impl Into<String>) -> AuditError {
        AuditError::Database {
            database: self.database.to_string(),
            message: message.into(),
        }
    }

    /// Records `events` with one commit, trying again as the type's documentation says.
    fn append(&self, events: &[AuditEvent], durable: bool) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let deadline = self.give_up_after.map(|d| Instant::now() + d);
        let mut delay = RETRY_FIRST;
        let mut failures = 0_u32;
        loop {
            let result = self.block_on(self.attempt(state, events, durable));
            let error = match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::warn!(target: "rmcp_authz::audit", chain = %self.chain, failures, "audit database writable again");
                    }
                    return Ok(());
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => e,
            };
            failures += 1;
            if failures == 1 || failures.is_multiple_of(20) {
                tracing::error!(target: "rmcp_authz::audit", chain = %self.chain, error = %error, failures, "audit events not written; trying again");
            }
            if deadline.is_some_and(|d| Instant::now() + delay > d) {
                return Err(error);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    /// One try: connect if needed, settle an uncertain earlier batch, write this one.
    async fn attempt(
        &self,
        state: &mut State,
        events: &[AuditEvent],
        durable: bool,
    ) -> Result<(), Failure> {
        if state
            .connection
            .as_ref()
            .is_none_or(|c| c.client.is_closed())
        {
            state.connection = None;
            let client = self
                .database
                .connect()
                .await
                .map_err(|e| Failure::Retry(self.error(e.to_string())))?;
            let append = client
                .prepare(APPEND)
                .await
                .map_err(|e| self.classify(&e))?;
            state.connection = Some(Connected {
                client,
                append,
                synchronous: None,
            });
        }
        let Some(connection) = state.connection.as_mut() else {
            return Err(Failure::Retry(self.error("not connected")));
        };
        if let Some((seq, hash)) = state.uncertain {
            let (head_seq, head_hash) = read_head(&connection.client, &self.chain)
                .await
                .map_err(|e| self.classify(&e))?;
            if head_seq == seq && head_hash.as_bytes() == hash {
                // The batch was committed after all.
                state.last_seq = seq;
                state.last_hash = hash;
            } else if head_seq != state.last_seq || head_hash.as_bytes() != state.last_hash {
                return Err(Failure::Fatal(self.error(format!(
                    "chain {:?} ends at record {head_seq}, not where this process left it: another process writes it, or its head was changed",
                    self.chain
                ))));
            }
            state.uncertain = None;
        }
        let batch = chain_batch(&mut state.buffer, events, state.last_seq, &state.last_hash)?;
        if connection.synchronous != Some(durable) {
            let set = if durable {
                "SET synchronous_commit = on"
            } else {
                "SET synchronous_commit = off"
            };
            connection
                .client
                .batch_execute(set)
                .await
                .map_err(|e| self.classify(&e))?;
            connection.synchronous = Some(durable);
        }
        let new_hash = hash_text(&batch.last_hash);
        let old_hash = hash_text(&state.last_hash);
        let written = connection
            .client
            .execute(
                &connection.append,
                &[
                    &self.chain,
                    &batch.last_seq,
                    &new_hash,
                    &state.last_seq,
                    &old_hash,
                    &batch.seqs,
                    &batch.times,
                    &batch.lines,
                ],
            )
            .await;
        match written {
            Ok(n) if n == batch.lines.len() as u64 => {
                state.last_seq = batch.last_seq;
                state.last_hash = batch.last_hash;
                Ok(())
            }
            Ok(_) => Err(Failure::Fatal(self.error(format!(
                "chain {:?} does not end where this process left it (record {}): another process writes it, or its head was changed",
                self.chain, state.last_seq
            )))),
            Err(e) => {
                if e.as_db_error().is_none() {
                    // The statement may have been committed before the connection went.
                    state.uncertain = Some((batch.last_seq, batch.last_hash));
                    state.connection = None;
                }
                Err(self.classify(&e))
            }
        }
    }

    /// Whether trying `error` again can help: not for a statement the server refused on
    /// its merits (a constraint, a missing table, bad data).
    fn classify(&self, error: &tokio_postgres::Error) -> Failure {
        let e = self.error(driver_message(error));
        match error.as_db_error().map(|db| db.code().code()) {
            Some(code)
                if code.starts_with("22") || code.starts_with("23") || code.starts_with("42") =>
            {
                Failure::Fatal(e)
            }
            _ => Failure::Retry(e),
        }
    }
}

impl Drop for PostgresSink {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which an async context forbids; this
        // one has only connection tasks left.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl AuditSink for PostgresSink {
    /// Writes `events` with an asynchronous commit.
    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        self.append(events, false)
    }

    /// Nothing to do: a durable batch was committed synchronously by
    /// [`AuditSink::commit`], and PostgreSQL flushes asynchronous commits within three
    /// `wal_writer_delay`s.
    fn flush(&self, _durable: bool) -> Result<(), AuditError> {
        Ok(())
    }

    fn commit(&self, events: &[AuditEvent], durable: bool) -> Result<(), AuditError> {
        self.append(events, durable)
    }
}

impl PostgresSinkBuilder {
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
        let runtime = tokio::runtime::Builder::new_current_thread()
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
            runtime: Some(runtime),
            state: Mutex::new(State {
                connection: Some(connected),
                last_seq,
                last_hash,
                uncertain: None,
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
                client,
                append,
                synchronous: None,
            },
            last_seq,
            last_hash,
        ))
    }
}

/// The head of `chain`: its last sequence number and last record hash.
async fn read_head(client: &Client, chain: &str) -> Result<(i64, String), tokio_postgres::Error> {
    let row = client.query_one(HEAD, &[&chain]).await?;
    Ok((row.get(0), row.get(1)))
}

/// Serializes `events` as records chained after record `seq` whose hash is `hash`.
fn chain_batch(
    buffer: &mut Vec<u8>,
    events: &[AuditEvent],
    mut seq: i64,
    hash: &[u8; 64],
) -> Result<Batch, Failure> {
    let mut batch = Batch {
        seqs: Vec::with_capacity(events.len()),
        times: Vec::with_capacity(events.len()),
        lines: Vec::with_capacity(events.len()),
        last_seq: seq,
        last_hash: *hash,
    };
    for event in events {
        buffer.clear();
        batch.last_hash = append_record(buffer, event, &batch.last_hash).map_err(Failure::Fatal)?;
        buffer.pop(); // the newline
        let line = String::from_utf8(std::mem::take(buffer))
            .map_err(|_| Failure::Fatal(AuditError::Serialize("not UTF-8".to_owned())))?;
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

/// A hash array as text.
fn hash_text(hash: &[u8; 64]) -> String {
    String::from_utf8_lossy(hash).into_owned()
}
