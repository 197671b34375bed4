//! The revocation list shared through the database: [`revoke`] and [`unrevoke`] change
//! it, [`SharedRevocations`] keeps a verifier's list equal to it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client};

use super::connect::{Database, PostgresError, driver_message};
pub use crate::token::RevocationKind;
use crate::token::RevocationLists as Lists;
use crate::token::Revocations;

/// How often [`SharedRevocations`] reloads the whole list, by default: the safety net
/// under the notifications (a notification is lost when the connection drops).
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The channel the schema's trigger announces changes on.
const CHANNEL: &str = "rmcp_authz_revocations";

/// The first wait before reconnecting; it doubles up to 5 seconds.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// One entry of the shared list, as [`revoked`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revoked {
    /// What it names.
    pub kind: RevocationKind,
    /// The `jti` or the subject.
    pub value: String,
    /// When it was revoked.
    pub revoked_at: SystemTime,
    /// When it is forgotten.
    pub expires_at: SystemTime,
    /// Why, as the revoker said.
    pub reason: Option<String>,
}

fn kind_of(text: &str) -> Option<RevocationKind> {
    match text {
        "jti" => Some(RevocationKind::TokenId),
        "sub" => Some(RevocationKind::Subject),
        _ => None,
    }
}

/// Revokes `value` (a `jti` or a subject) for every replica until `expires_at`
/// (revoking again moves the date and the reason). Replicas running [`SharedRevocations`]
/// refuse it within a second.
///
/// # Errors
/// A [`PostgresError`] when the database cannot be reached or written.
pub async fn revoke(
    database: &Database,
    kind: RevocationKind,
    value: &str,
    expires_at: SystemTime,
    reason: Option<&str>,
) -> Result<(), PostgresError> {
    let client = database.connect().await?;
    database.check_schema(&client).await?;
    client
        .execute(
            "INSERT INTO rmcp_authz_revocations (kind, value, expires_at, reason)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, value) DO UPDATE
             SET revoked_at = now(), expires_at = EXCLUDED.expires_at, reason = EXCLUDED.reason",
            &[&kind.claim(), &value, &expires_at, &reason],
        )
        .await
        .map_err(|e| database.query_error(&e))?;
    Ok(())
}

/// Takes `value` off the shared list. Returns whether it was on it.
///
/// # Errors
/// A [`PostgresError`] when the database cannot be reached or written.
pub async fn unrevoke(
    database: &Database,
    kind: RevocationKind,
    value: &str,
) -> Result<bool, PostgresError> {
    let client = database.connect().await?;
    database.check_schema(&client).await?;
    let removed = client
        .execute(
            "DELETE FROM rmcp_authz_revocations WHERE kind = $1 AND value = $2",
            &[&kind.claim(), &value],
        )
        .await
        .map_err(|e| database.query_error(&e))?;
    Ok(removed > 0)
}

/// The shared list's entries not yet expired, newest first.
///
/// # Errors
/// A [`PostgresError`] when the database cannot be read.
pub async fn revoked(database: &Database) -> Result<Vec<Revoked>, PostgresError> {
    let client = database.connect().await?;
    database.check_schema(&client).await?;
    let rows = client
        .query(
            "SELECT kind, value, revoked_at, expires_at, reason FROM rmcp_authz_revocations
             WHERE expires_at > now() ORDER BY revoked_at DESC, kind, value",
            &[],
        )
        .await
        .map_err(|e| database.query_error(&e))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(Revoked {
                kind: kind_of(row.get(0))?,
                value: row.get(1),
                revoked_at: row.get(2),
                expires_at: row.get(3),
                reason: row.get(4),
            })
        })
        .collect())
}

/// Keeps a [`Revocations`] list (a [`CachedVerifier`](crate::token::CachedVerifier)'s)
/// equal to the database's shared list, on a thread of its own: the whole list is loaded
/// before [`SharedRevocations::start`] returns (a replica that restarts starts with it),
/// each change is applied as the database announces it (`LISTEN`/`NOTIFY`, well within a
/// second), and the whole list is reloaded every reload interval and after every
/// reconnection, in case a notification was lost.
///
/// While the database cannot be reached, the list keeps what it last loaded (and entries
/// still expire); the thread reconnects with a backoff. Reloads replace the list: revoke
/// through [`revoke`] (or [`SharedRevocations::revoke`]), not on the local list, or the
/// next reload forgets it. Dropping the handle stops the thread.
pub struct SharedRevocations {
    database: Database,
    revocations: Revocations,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for SharedRevocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRevocations")
            .field("database", &self.database)
            .field("revocations", &self.revocations)
            .finish_non_exhaustive()
    }
}

impl Drop for SharedRevocations {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Not joined: the thread ends at its next wake-up, and joining could block an
        // async caller.
        drop(self.thread.take());
    }
}

impl SharedRevocations {
    /// Starts keeping `revocations` equal to `database`'s list, reloading it every
    /// [`DEFAULT_RELOAD_INTERVAL`]. Blocks until the list is loaded (may be called from
    /// async code).
    ///
    /// # Errors
    /// A [`PostgresError`] when the database cannot be reached or read at start.
    pub fn start(database: Database, revocations: Revocations) -> Result<Self, PostgresError> {
        SharedRevocations::start_with(database, revocations, DEFAULT_RELOAD_INTERVAL)
    }

    /// [`SharedRevocations::start`], reloading every `reload_interval`.
    ///
    /// # Errors
    /// As [`SharedRevocations::start`].
    pub fn start_with(
        database: Database,
        revocations: Revocations,
        reload_interval: Duration,
    ) -> Result<Self, PostgresError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PostgresError::Thread)?;
        let (stop, stopped) = oneshot::channel();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = {
            let database = database.clone();
            let revocations = revocations.clone();
            std::thread::Builder::new()
                .name("rmcp-authz-revocations".to_owned())
                .spawn(move || {
                    runtime.block_on(follow(
                        database,
                        revocations,
                        reload_interval.max(Duration::from_millis(100)),
                        ready,
                        stopped,
                    ));
                })
                .map_err(PostgresError::Thread)?
        };
        match is_ready.recv() {
            Ok(Ok(())) => Ok(SharedRevocations {
                database,
                revocations,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PostgresError::Thread(std::io::Error::other(
                "the revocation thread stopped before loading the list",
            ))),
        }
    }

    /// The list kept up to date.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Revokes `value` for every replica for `ttl`, and on this one at once.
    ///
    /// # Errors
    /// As [`revoke`].
    pub async fn revoke(
        &self,
        kind: RevocationKind,
        value: &str,
        ttl: Duration,
        reason: Option<&str>,
    ) -> Result<(), PostgresError> {
        let expires_at = expiry_after(ttl).map_err(|message| PostgresError::Query {
            database: self.database.to_string(),
            message,
        })?;
        revoke(&self.database, kind, value, expires_at, reason).await?;
        self.revocations
            .revoke_until(kind, value, unix_seconds(expires_at));
        Ok(())
    }

    /// Takes `value` off the list of every replica, and of this one at once. Returns
    /// whether it was on the shared list.
    ///
    /// # Errors
    /// As [`unrevoke`].
    pub async fn unrevoke(&self, kind: RevocationKind, value: &str) -> Result<bool, PostgresError> {
        let removed = unrevoke(&self.database, kind, value).await?;
        self.revocations.remove(kind, value);
        Ok(removed)
    }
}

/// The longest revocation: a hundred years.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// When a revocation made now for `ttl` expires.
///
/// # Errors
/// The message for a TTL longer than a hundred years.
pub fn expiry_after(ttl: Duration) -> Result<SystemTime, String> {
    if ttl > MAX_TTL {
        return Err(format!(
            "a revocation lasts at most 100 years, not {}",
            humantime::format_duration(ttl)
        ));
    }
    Ok(SystemTime::now() + ttl)
}

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What the connection task reports.
enum Event {
    Notification(String),
    Closed(String),
}

/// A listening connection: its client, and the notifications its task forwards.
struct Listening {
    client: Client,
    events: mpsc::UnboundedReceiver<Event>,
}

async fn listen(database: &Database) -> Result<Listening, PostgresError> {
    let (client, mut connection) = database.connect_raw().await?;
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    Event::Notification(n.payload().to_owned())
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => Event::Closed(driver_message(&e)),
                None => Event::Closed("the server closed the connection".to_owned()),
            };
            let closed = matches!(event, Event::Closed(_));
            if tx.send(event).is_err() || closed {
                return;
            }
        }
    });
    database.check_schema(&client).await?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| database.query_error(&e))?;
    Ok(Listening { client, events })
}

/// How long a load or a reload may take before the connection is dropped.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the whole list into `revocations`, within [`RELOAD_TIMEOUT`].
async fn reload(
    database: &Database,
    client: &Client,
    revocations: &Revocations,
) -> Result<(), PostgresError> {
    tokio::time::timeout(RELOAD_TIMEOUT, reload_now(database, client, revocations))
        .await
        .unwrap_or_else(|_| {
            Err(PostgresError::Query {
                database: database.to_string(),
                message: format!("the revocation list did not load within {RELOAD_TIMEOUT:?}"),
            })
        })
}

/// Loads the whole list into `revocations`.
async fn reload_now(
    database: &Database,
    client: &Client,
    revocations: &Revocations,
) -> Result<(), PostgresError> {
    let limit = i64::try_from(revocations.capacity()).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT kind, value, floor(extract(epoch FROM expires_at))::bigint
             FROM rmcp_authz_revocations WHERE expires_at > now()
             ORDER BY expires_at DESC LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(|e| database.query_error(&e))?;
    if rows.len() as i64 == limit {
        tracing::error!(
            target: "rmcp_authz::postgres",
            %database,
            capacity = limit,
            "the shared revocation list holds more entries than this replica's list can: the ones closest to expiry were left out; raise CacheOptions::max_revocations"
        );
    }
    let mut lists = Lists::default();
    for row in &rows {
        let map = match kind_of(row.get(0)) {
            Some(RevocationKind::TokenId) => &mut lists.jtis,
            Some(RevocationKind::Subject) => &mut lists.subjects,
            _ => continue,
        };
        map.insert(row.get(1), row.get(2));
    }
    revocations.replace(lists);
    Ok(())
}

/// Applies one notification; `true` when it asks for a full reload.
fn apply(payload: &str, revocations: &Revocations) -> bool {
    let Ok(change) = serde_json::from_str::<Value>(payload) else {
        return true;
    };
    let text = |key: &str| change.get(key).and_then(Value::as_str);
    let kind = text("kind").and_then(kind_of);
    match (text("op"), kind, text("value")) {
        (Some("upsert"), Some(kind), Some(value)) => {
            let until = change.get("expires_at").and_then(Value::as_i64);
            match until {
                Some(until) => revocations.revoke_until(kind, value, until),
                None => return true,
            }
        }
        (Some("delete"), Some(kind), Some(value)) => {
            revocations.remove(kind, value);
        }
        _ => return true,
    }
    false
}

/// The thread's work: load, then follow the notifications and reload on the interval,
/// reconnecting as needed, until told to stop.
async fn follow(
    database: Database,
    revocations: Revocations,
    reload_interval: Duration,
    ready: std::sync::mpsc::Sender<Result<(), PostgresError>>,
    mut stop: oneshot::Receiver<()>,
) {
    let first = async {
        let listening = listen(&database).await?;
        reload(&database, &listening.client, &revocations).await?;
        Ok::<_, PostgresError>(listening)
    };
    let mut listening = match first.await {
        Ok(listening) => {
            let _ = ready.send(Ok(()));
            Some(listening)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut delay = RECONNECT_FIRST;
    let mut tick = tokio::time::interval(reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        let Some(current) = listening.as_mut() else {
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(delay) => {}
            }
            let reconnected = match listen(&database).await {
                Ok(fresh) => reload(&database, &fresh.client, &revocations)
                    .await
                    .map(|()| fresh),
                Err(e) => Err(e),
            };
            match reconnected {
                Ok(fresh) => {
                    tracing::info!(target: "rmcp_authz::postgres", %database, "revocation list reloaded after reconnecting");
                    listening = Some(fresh);
                    delay = RECONNECT_FIRST;
                }
                Err(e) => {
                    warn_unreachable(&e);
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
            continue;
        };
        let lost = tokio::select! {
            _ = &mut stop => return,
            event = current.events.recv() => match event {
                Some(Event::Notification(payload)) => {
                    apply(&payload, &revocations)
                        && reload(&database, &current.client, &revocations).await.is_err()
                }
                Some(Event::Closed(message)) => {
                    tracing::warn!(target: "rmcp_authz::postgres", %database, error = %message, "revocation listener disconnected; reconnecting");
                    true
                }
                None => true,
            },
            _ = tick.tick() => reload(&database, &current.client, &revocations).await.is_err(),
        };
        if lost {
            listening = None;
        }
    }
}

fn warn_unreachable(error: &PostgresError) {
    tracing::warn!(target: "rmcp_authz::postgres", error = %error, "revocation list not reloaded; keeping the last one");
}

/// A verifier that refuses what the shared list revokes: a
/// [`CachedVerifier`](crate::token::CachedVerifier) in front of `V`, whose revocation
/// list a [`SharedRevocations`] keeps equal to the database's for as long as this value
/// lives. What the `[revocation]` configuration section builds.
pub struct SharedRevocationVerifier<V> {
    cache: crate::token::CachedVerifier<V>,
    shared: SharedRevocations,
}

impl<V: fmt::Debug> fmt::Debug for SharedRevocationVerifier<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRevocationVerifier")
            .field("cache", &self.cache)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<V> SharedRevocationVerifier<V> {
    /// Puts a cache with `options` in front of `inner`, and starts following
    /// `database`'s list into it (as [`SharedRevocations::start_with`]).
    ///
    /// # Errors
    /// As [`SharedRevocations::start`].
    pub fn start(
        inner: V,
        options: crate::token::CacheOptions,
        database: Database,
        reload_interval: Duration,
    ) -> Result<Self, PostgresError> {
        let cache = crate::token::CachedVerifier::new(inner, options);
        let shared = SharedRevocations::start_with(database, cache.revocations(), reload_interval)?;
        Ok(SharedRevocationVerifier { cache, shared })
    }

    /// The cache (its counters, its list).
    pub fn cache(&self) -> &crate::token::CachedVerifier<V> {
        &self.cache
    }

    /// The follower of the shared list: revoke through it.
    pub fn shared(&self) -> &SharedRevocations {
        &self.shared
    }
}

#[async_trait::async_trait]
impl<V: crate::token::Verifier> crate::token::Verifier for SharedRevocationVerifier<V> {
    async fn verify(&self, token: &str) -> Result<crate::Principal, crate::token::AuthError> {
        self.cache.verify(token).await
    }

    fn resource_uri(&self) -> Option<&str> {
        self.cache.resource_uri()
    }

    fn trusted_issuers(&self) -> Vec<String> {
        self.cache.trusted_issuers()
    }
}
