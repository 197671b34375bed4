//! [`PostgresSink`]: audit events appended to `rmcp_authz_audit`, as one hash chain per
//! replica, one statement (one commit) per batch.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
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
    /// A batch sent and not yet confirmed (buffered mode).
    in_flight: Option<InFlight>,
    buffer: Vec<u8>,
}

/// A batch whose statement is running.
struct InFlight {
    batch: Arc<Batch>,
    handle: JoinHandle<Result<u64, Failure>>,
}

struct Connected {
    client: Arc<Client>,
    append: Statement,
    /// The session's `synchronous_commit`, once set.
    synchronous: Option<bool>,
}

/// One batch, serialized and chained after a given head.
struct Batch {
    base_seq: i64,
    base_hash: [u8; 64],
    seqs: Vec<i64>,
    times: Vec<SystemTime>,
    lines: Vec<String>,
    last_seq: i64,
    last_hash: [u8; 64],
}

/// Why an attempt failed.
enum Failure {
    /// The statement failed, with the driver's error (classified once back).
    Sent(tokio_postgres::Error),
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
    /// In buffered mode without [`give_up_after`](PostgresSinkBuilder::give_up_after),
    /// the batch is sent and left in flight: the next call (or [`AuditSink::flush`])
    /// settles it, while this thread serializes the next batch.
    fn append(&self, events: &[AuditEvent], durable: bool) -> Result<(), AuditError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.uncertain.is_some() {
            // A batch given up on may have been committed: learn where the chain ends.
            self.until_done(|| self.block_on(self.resolve(state)))?;
        }
        if events.is_empty() {
            return self.settle(state);
        }
        let (base_seq, base_hash) = state
            .in_flight
            .as_ref()
            .map_or((state.last_seq, state.last_hash), |f| {
                (f.batch.last_seq, f.batch.last_hash)
            });
        let mut batch = chain_batch(&mut state.buffer, events, base_seq, &base_hash)?;
        self.settle(state)?;
        if (batch.base_seq, batch.base_hash) != (state.last_seq, state.last_hash) {
            // The batch in flight was not written after all: chain after what was.
            batch = chain_batch(&mut state.buffer, events, state.last_seq, &state.last_hash)?;
        }
        let batch = Arc::new(batch);
        if !durable && self.give_up_after.is_none() {
            match self.block_on(self.send(state, &batch, false)) {
                Ok(handle) => {
                    state.in_flight = Some(InFlight { batch, handle });
                    return Ok(());
                }
                Err(failure) => match self.verdict(failure) {
                    // Not even sent: write it the patient way.
                    Ok(_) => {}
                    Err(fatal) => return Err(fatal),
                },
            }
        }
        self.write(state, &batch, durable)
    }

    /// Waits for the batch in flight, if any, and writes it again if it failed.
    fn settle(&self, state: &mut State) -> Result<(), AuditError> {
        let Some(InFlight { batch, handle }) = state.in_flight.take() else {
            return Ok(());
        };
        let sent = self.block_on(async {
            match handle.await {
                Ok(result) => result,
                Err(_) => Err(Failure::Retry(self.error("the statement's task was lost"))),
            }
        });
        match self
            .conclude(state, &batch, sent)
            .map_err(|f| self.verdict(f))
        {
            Ok(()) => Ok(()),
            Err(Err(fatal)) => Err(fatal),
            Err(Ok(_)) => self.write(state, &batch, false),
        }
    }

    /// Writes `batch` and waits for its commit, trying again until it is written, a
    /// fatal error, or the time given up after.
    fn write(
        &self,
        state: &mut State,
        batch: &Arc<Batch>,
        durable: bool,
    ) -> Result<(), AuditError> {
        self.until_done(|| {
            let sent = self.block_on(async {
                let handle = self.send(state, batch, durable).await?;
                match handle.await {
                    Ok(result) => result,
                    Err(_) => Err(Failure::Retry(self.error("the statement's task was lost"))),
                }
            });
            self.conclude(state, batch, sent)
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the time to give up comes,
    /// waiting longer between tries.
    fn until_done(
        &self,
        mut attempt: impl FnMut() -> Result<(), Failure>,
    ) -> Result<(), AuditError> {
        let deadline = self.give_up_after.map(|d| Instant::now() + d);
        let mut delay = RETRY_FIRST;
        let mut failures = 0_u32;
        loop {
            let error = match attempt().map_err(|f| self.verdict(f)) {
                Ok(()) => {
                    if failures > 0 {
                        tracing::warn!(target: "rmcp_authz::audit", chain = %self.chain, failures, "audit database writable again");
                    }
                    return Ok(());
                }
                Err(Err(fatal)) => return Err(fatal),
                Err(Ok(retry)) => retry,
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

    /// Connects if needed, and sends `batch` as one statement (on the session's commit
    /// mode); the returned task ends with the statement's result.
    async fn send(
        &self,
        state: &mut State,
        batch: &Arc<Batch>,
        durable: bool,
    ) -> Result<JoinHandle<Result<u64, Failure>>, Failure> {
        let connection = self.connected(state).await?;
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
        let client = Arc::clone(&connection.client);
        let statement = connection.append.clone();
        let (batch, chain) = (Arc::clone(batch), self.chain.clone());
        Ok(tokio::spawn(async move {
            let new_hash = hash_text(&batch.last_hash);
            let old_hash = hash_text(&batch.base_hash);
            client
                .execute(
                    &statement,
                    &[
                        &chain,
                        &batch.last_seq,
                        &new_hash,
                        &batch.base_seq,
                        &old_hash,
                        &batch.seqs,
                        &batch.times,
                        &batch.lines,
                    ],
                )
                .await
                .map_err(Failure::Sent)
        }))
    }

    /// The connection, made if there is none (or it closed).
    async fn connected<'s>(&self, state: &'s mut State) -> Result<&'s mut Connected, Failure> {
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
                client: Arc::new(client),
                append,
                synchronous: None,
            });
        }
        state
            .connection
            .as_mut()
            .ok_or_else(|| Failure::Retry(self.error("not connected")))
    }

    /// Moves the chain past `batch` when its statement wrote it whole.
    fn conclude(
        &self,
        state: &mut State,
        batch: &Batch,
        sent: Result<u64, Failure>,
    ) -> Result<(), Failure> {
        match sent {
            Ok(n) if n == batch.lines.len() as u64 => {
                state.last_seq = batch.last_seq;
                state.last_hash = batch.last_hash;
                Ok(())
            }
            Ok(_) => Err(Failure::Fatal(self.error(format!(
                "chain {:?} does not end where this process left it (record {}): another process writes it, or its head was changed",
                self.chain, batch.base_seq
            )))),
            Err(Failure::Sent(e)) => {
                if e.as_db_error().is_none() {
                    // The statement may have been committed before the connection went.
                    state.uncertain = Some((batch.last_seq, batch.last_hash));
                    state.connection = None;
                    let resolved = self.block_on(self.resolve(state));
                    if resolved.is_ok() && state.last_seq == batch.last_seq {
                        return Ok(());
                    }
                }
                Err(self.classify(&e))
            }
            Err(other) => Err(other),
        }
    }

    /// Settles a batch whose commit is uncertain by reading the chain's head: it was
    /// written (the chain moves past it), or it was not.
    async fn resolve(&self, state: &mut State) -> Result<(), Failure> {
        let Some((seq, hash)) = state.uncertain else {
            return Ok(());
        };
        let (last_seq, last_hash) = (state.last_seq, state.last_hash);
        let connection = self.connected(state).await?;
        let (head_seq, head_hash) = read_head(&connection.client, &self.chain)
            .await
            .map_err(|e| self.classify(&e))?;
        if head_seq == seq && head_hash.as_bytes() == hash {
            state.last_seq = seq;
            state.last_hash = hash;
        } else if head_seq != last_seq || head_hash.as_bytes() != last_hash {
            return Err(Failure::Fatal(self.error(format!(
                "chain {:?} ends at record {head_seq}, not where this process left it: another process writes it, or its head was changed",
                self.chain
            ))));
        }
        state.uncertain = None;
        Ok(())
    }

    /// A failure as an error worth trying again (`Ok`) or not (`Err`).
    fn verdict(&self, failure: Failure) -> Result<AuditError, AuditError> {
        match failure {
            Failure::Retry(e) => Ok(e),
            Failure::Fatal(e) => Err(e),
            // `classify` answers `Retry` or `Fatal`.
            Failure::Sent(e) => self.verdict(self.classify(&e)),
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

    /// Waits for the batch in flight, if any (writing it again if it failed). A durable
    /// batch was committed synchronously by [`AuditSink::commit`]; PostgreSQL flushes
    /// asynchronous commits within three `wal_writer_delay`s.
    fn flush(&self, _durable: bool) -> Result<(), AuditError> {
        self.append(&[], false)
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

/// A hash array as text.
fn hash_text(hash: &[u8; 64]) -> String {
    String::from_utf8_lossy(hash).into_owned()
}
