//! [`PostgresSink`]: audit events appended to `rmcp_authz_audit`, as one hash chain per
//! replica, one statement (one commit) per batch.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use super::batch::{Batch, chain_batch, hash_text};
use super::builder::PostgresSinkBuilder;
use super::connect::{Database, driver_message};
use crate::audit::{AuditError, AuditEvent, AuditSink, GENESIS_HASH, line_hash};

/// The first wait before a failed batch is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// The longest wait between two tries of a batch.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The longest one attempt may wait for the database (a silent network, a lock): then
/// the connection is dropped and the batch settled from the chain's head.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Appends a batch where the chain's head says the chain ends, and moves the head, in one
/// statement: a batch is written whole or not at all, and only by the process that knows
/// where its chain ends.
pub(super) const APPEND: &str = "WITH head AS (
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
    pub(super) database: Database,
    pub(super) chain: String,
    pub(super) give_up_after: Option<Duration>,
    pub(super) overlap: bool,
    pub(super) runtime: Option<Runtime>,
    pub(super) state: Mutex<State>,
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

pub(super) struct State {
    pub(super) connection: Option<Connected>,
    /// The chain's last sequence number and record hash, as committed.
    pub(super) last_seq: i64,
    pub(super) last_hash: [u8; 64],
    /// A batch that failed after it may have been committed (the connection dropped
    /// during the statement): its end, to compare with the head before the next write.
    pub(super) uncertain: Option<(i64, [u8; 64])>,
    /// A batch sent and not yet confirmed (buffered mode).
    pub(super) in_flight: Option<InFlight>,
    pub(super) buffer: Vec<u8>,
}

/// A batch whose statement is running.
pub(super) struct InFlight {
    batch: Arc<Batch>,
    handle: JoinHandle<Result<u64, Failure>>,
}

pub(super) struct Connected {
    pub(super) client: Arc<Client>,
    pub(super) append: Statement,
    /// The session's `synchronous_commit`, once set.
    pub(super) synchronous: Option<bool>,
}

/// What the chain's head says of a batch whose write was in doubt.
pub(super) enum Head {
    /// It was written: the chain ends with it.
    Written,
    /// It was not: the chain ends where the batch is chained.
    NotWritten,
    /// The chain ends before where the batch is chained (records lost by the database):
    /// the batch must be chained after the new end.
    Rebased,
}

/// Why an attempt failed.
pub(super) enum Failure {
    /// The statement failed, with the driver's error (classified once back).
    Sent(tokio_postgres::Error),
    /// The statement did not answer in time (worth trying again, on a new connection).
    TimedOut(AuditError),
    /// Worth trying again (the database is away, restarting, or overloaded).
    Retry(AuditError),
    /// Trying again cannot help.
    Fatal(AuditError),
}

impl PostgresSink {
    /// Settings for a sink on `database` writing chain `chain`: give each replica its own
    /// chain id, the same across its restarts (a host name, a pod name).
    pub fn builder(database: Database, chain: impl Into<String>) -> PostgresSinkBuilder {
        PostgresSinkBuilder::new(database, chain.into())
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
    /// In buffered mode without [`give_up_after`](PostgresSinkBuilder::give_up_after)
    /// (and unless [`overlap`](PostgresSinkBuilder::overlap) is off), the batch is sent
    /// and left in flight: the next call (or [`AuditSink::flush`]) settles it, while this
    /// thread serializes the next batch.
    fn append(&self, events: &[AuditEvent], durable: bool) -> Result<(), AuditError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.uncertain.is_some() {
            // A batch given up on may have been committed: learn where the chain ends.
            self.until_done(|| {
                let end = state.uncertain;
                self.block_on(self.consult_head(state, end)).map(|_| ())
            })?;
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
            // The batch in flight ended elsewhere: chain after where the chain ends.
            batch = batch.rechain(state.last_seq, &state.last_hash)?;
        }
        let batch = Arc::new(batch);
        if self.overlap && !durable && self.give_up_after.is_none() {
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
        self.write(state, batch, durable, None)
    }

    /// Waits for the batch in flight, if any, and writes it again if it failed.
    fn settle(&self, state: &mut State) -> Result<(), AuditError> {
        let Some(InFlight { batch, handle }) = state.in_flight.take() else {
            return Ok(());
        };
        let sent = self.block_on(self.answer(handle));
        self.write(state, batch, false, Some(sent))
    }

    /// The result of a statement sent by [`PostgresSink::send`], waited for at most
    /// [`ATTEMPT_TIMEOUT`] (or less, when the sink gives up sooner).
    async fn answer(&self, handle: JoinHandle<Result<u64, Failure>>) -> Result<u64, Failure> {
        let limit = self
            .give_up_after
            .map_or(ATTEMPT_TIMEOUT, |limit| limit.min(ATTEMPT_TIMEOUT));
        match tokio::time::timeout(limit, handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Failure::Retry(self.error("the statement's task was lost"))),
            Err(_) => Err(Failure::TimedOut(
                self.error(format!("no answer to the statement within {limit:?}")),
            )),
        }
    }

    /// Writes `batch` and waits for its commit, trying again until it is written, a
    /// fatal error, or the time given up after. `first` is the result of a send already
    /// made (the batch was in flight).
    fn write(
        &self,
        state: &mut State,
        mut batch: Arc<Batch>,
        durable: bool,
        mut first: Option<Result<u64, Failure>>,
    ) -> Result<(), AuditError> {
        self.until_done(|| {
            let sent = match first.take() {
                Some(sent) => sent,
                None => {
                    if state.uncertain.is_some() {
                        let end = Some((batch.last_seq, batch.last_hash));
                        match self.block_on(self.consult_head(state, end))? {
                            Head::Written => return Ok(()),
                            Head::Rebased => {
                                batch = rechained(&batch, state)?;
                            }
                            Head::NotWritten => {}
                        }
                    }
                    self.block_on(async {
                        let handle = self.send(state, &batch, durable).await?;
                        self.answer(handle).await
                    })
                }
            };
            let end = (batch.last_seq, batch.last_hash);
            match sent {
                Ok(n) if n == batch.lines.len() as u64 => {
                    (state.last_seq, state.last_hash) = end;
                    state.uncertain = None;
                    Ok(())
                }
                // The head was not where the batch was chained: ask it where the chain
                // ends.
                Ok(_) => match self.block_on(self.consult_head(state, Some(end)))? {
                    Head::Written => Ok(()),
                    Head::Rebased => {
                        batch = rechained(&batch, state)?;
                        Err(Failure::Retry(self.error(
                            "the chain ends before where this batch was chained; chained again",
                        )))
                    }
                    Head::NotWritten => Err(Failure::Retry(
                        self.error("the batch was not written; trying again"),
                    )),
                },
                Err(Failure::Sent(e)) => {
                    state.connection = None;
                    if e.as_db_error().is_none() {
                        // It may have been committed before the connection went.
                        state.uncertain = Some(end);
                    }
                    Err(self.classify(&e))
                }
                Err(Failure::TimedOut(e)) => {
                    state.connection = None;
                    state.uncertain = Some(end);
                    Err(Failure::TimedOut(e))
                }
                Err(other) => Err(other),
            }
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

    /// Reads where the chain ends, to settle a batch whose write is in doubt (`end`, the
    /// end it would have given the chain): it was written, it was not, or the chain ends
    /// before what this process took as written (PostgreSQL lost commits in a crash or a
    /// failover), in which case the chain goes on from where it ends and the loss is
    /// logged. Anything else means another process writes the chain: fatal.
    async fn consult_head(
        &self,
        state: &mut State,
        end: Option<(i64, [u8; 64])>,
    ) -> Result<Head, Failure> {
        let (last_seq, last_hash) = (state.last_seq, state.last_hash);
        let connection = self.connected(state).await?;
        let client = &connection.client;
        let (head_seq, head_hash) = read_head(client, &self.chain)
            .await
            .map_err(|e| self.classify(&e))?;
        let head: Option<[u8; 64]> = head_hash.as_bytes().try_into().ok();
        let fatal = |why: String| {
            Failure::Fatal(self.error(format!(
                "chain {:?} ends at record {head_seq}, {why}: another process writes it, or it was changed",
                self.chain
            )))
        };
        let Some(head) = head else {
            return Err(fatal("with a head hash that is not SHA-256 hex".to_owned()));
        };
        let answer = if end == Some((head_seq, head)) {
            (state.last_seq, state.last_hash) = (head_seq, head);
            Head::Written
        } else if (head_seq, head) == (last_seq, last_hash) {
            Head::NotWritten
        } else if head_seq < last_seq {
            let last = client
                .query_opt(
                    "SELECT seq, record FROM rmcp_authz_audit WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
                    &[&self.chain],
                )
                .await
                .map_err(|e| self.classify(&e))?;
            let consistent = match &last {
                None => head_seq == 0 && head_hash == GENESIS_HASH,
                Some(row) => {
                    row.get::<_, i64>(0) == head_seq
                        && line_hash(row.get::<_, &str>(1).as_bytes()) == head_hash
                }
            };
            if !consistent {
                return Err(fatal("and its last row does not match it".to_owned()));
            }
            tracing::error!(
                target: "rmcp_authz::audit",
                chain = %self.chain,
                lost_from = head_seq + 1,
                lost_to = last_seq,
                "PostgreSQL lost audit records it had acknowledged (a crash with asynchronous commits, or a failover): the chain goes on from where it ends"
            );
            (state.last_seq, state.last_hash) = (head_seq, head);
            Head::Rebased
        } else {
            return Err(fatal(format!(
                "past record {last_seq} where this process left it"
            )));
        };
        state.uncertain = None;
        Ok(answer)
    }

    /// A failure as an error worth trying again (`Ok`) or not (`Err`).
    fn verdict(&self, failure: Failure) -> Result<AuditError, AuditError> {
        match failure {
            Failure::Retry(e) | Failure::TimedOut(e) => Ok(e),
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

/// `batch` chained after where `state` says the chain ends.
fn rechained(batch: &Batch, state: &State) -> Result<Arc<Batch>, Failure> {
    batch
        .rechain(state.last_seq, &state.last_hash)
        .map(Arc::new)
        .map_err(Failure::Fatal)
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

/// The head of `chain`: its last sequence number and last record hash.
pub(super) async fn read_head(
    client: &Client,
    chain: &str,
) -> Result<(i64, String), tokio_postgres::Error> {
    let row = client.query_one(HEAD, &[&chain]).await?;
    Ok((row.get(0), row.get(1)))
}
