//! Connecting to the database, the errors of this module, and the schema migration.

use std::fmt;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, GenericClient, NoTls, Socket};

use super::MIGRATIONS;

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a silent connection is kept: TCP keepalives start after this long idle, and
/// data unacknowledged this long closes the connection.
const DEAD_PEER: Duration = Duration::from_secs(30);

/// A lock id that serializes migrations run by several replicas at once (an arbitrary
/// constant: the ASCII of "rmcpauth").
const MIGRATION_LOCK: i64 = 0x726d_6370_6175_7468;

/// What went wrong with PostgreSQL. Messages name the database (host, port, name), never
/// the URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The URL (or key/value connection string) does not parse.
    #[error("invalid PostgreSQL connection string: {0}")]
    Url(String),
    /// The environment variable that should hold the URL is not set.
    #[error("the environment variable {0} (the PostgreSQL URL) is not set")]
    MissingEnv(String),
    /// The database could not be reached, or refused the connection.
    #[error("cannot connect to PostgreSQL at {database}: {message}")]
    Connect {
        /// The database (host, port, name).
        database: String,
        /// What the driver said.
        message: String,
    },
    /// A statement failed.
    #[error("PostgreSQL at {database}: {message}")]
    Query {
        /// The database (host, port, name).
        database: String,
        /// What the driver or the server said.
        message: String,
    },
    /// The rmcp-authz tables are missing, or at another version.
    #[error(
        "PostgreSQL at {database}: the rmcp-authz schema is {}, this build needs version {SCHEMA_VERSION}; apply sdk/migrations/postgres/ with psql, or start with `migrate = true` (PostgresSinkBuilder::migrate)",
        match found { Some(v) => format!("at version {v}"), None => "not installed".to_owned() }
    )]
    Schema {
        /// The database (host, port, name).
        database: String,
        /// The highest version applied, if any.
        found: Option<i32>,
    },
    /// A chain's head does not match its last record: the table was changed by hand, or
    /// another process writes the same chain.
    #[error(
        "audit chain {chain:?}: {reason}; check it with `rmcp-authz audit verify --postgres URL --chain {chain}`"
    )]
    Chain {
        /// The chain id.
        chain: String,
        /// What does not match.
        reason: String,
    },
    /// A background thread could not start.
    #[error("cannot start the PostgreSQL thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A database to connect to: a parsed connection string (a `postgres://` URL or
/// `key=value` pairs, as libpq takes them). Shown as `host:port/dbname`, without the
/// user's password.
#[derive(Clone)]
pub struct Database {
    config: Config,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

impl fmt::Display for Database {
    /// `host:port/dbname`, never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let name = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        write!(f, "{host}:{port}/{name}")
    }
}

impl std::str::FromStr for Database {
    type Err = PostgresError;

    fn from_str(url: &str) -> Result<Database, PostgresError> {
        Database::parse(url)
    }
}

impl Database {
    /// Parses a connection string. Unless it says otherwise, a connection attempt times
    /// out after 5 seconds (`connect_timeout`), and a connection whose peer went silent is
    /// closed after 30 seconds (`tcp_user_timeout`, `keepalives_idle`).
    ///
    /// # Errors
    /// [`PostgresError::Url`] when it does not parse (the message never repeats it).
    pub fn parse(url: &str) -> Result<Database, PostgresError> {
        let mut config: Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| PostgresError::Url(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A dead peer found in seconds, not in the kernel's hours (keepalives) or the
        // quarter hour of retransmissions (unacknowledged data), unless the URL says.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEAD_PEER);
        }
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(DEAD_PEER);
        }
        config.application_name("rmcp-authz");
        Ok(Database { config })
    }

    /// Parses the connection string held by environment variable `var`.
    ///
    /// # Errors
    /// [`PostgresError::MissingEnv`] when it is not set; as [`Database::parse`].
    pub fn from_env(var: &str) -> Result<Database, PostgresError> {
        let url = std::env::var(var).map_err(|_| PostgresError::MissingEnv(var.to_owned()))?;
        Database::parse(&url)
    }

    /// Connects, returning the client and the connection, which the caller polls.
    pub(super) async fn connect_raw(
        &self,
    ) -> Result<(Client, Connection<Socket, NoTlsStream>), PostgresError> {
        self.config
            .connect(NoTls)
            .await
            .map_err(|e| PostgresError::Connect {
                database: self.to_string(),
                message: driver_message(&e),
            })
    }

    /// Connects, driving the connection on a task of the current runtime.
    ///
    /// # Errors
    /// [`PostgresError::Connect`].
    pub async fn connect(&self) -> Result<Client, PostgresError> {
        let (client, connection) = self.connect_raw().await?;
        let database = self.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "rmcp_authz::postgres", %database, error = %driver_message(&e), "connection closed");
            }
        });
        Ok(client)
    }

    /// A [`PostgresError::Query`] for `error`, naming this database.
    pub(crate) fn query_error(&self, error: &tokio_postgres::Error) -> PostgresError {
        PostgresError::Query {
            database: self.to_string(),
            message: driver_message(error),
        }
    }

    /// Fails unless the schema is at [`SCHEMA_VERSION`].
    pub(crate) async fn check_schema(&self, client: &Client) -> Result<(), PostgresError> {
        let found = schema_version(client)
            .await
            .map_err(|e| self.query_error(&e))?;
        if found == Some(SCHEMA_VERSION as i32) {
            Ok(())
        } else {
            Err(PostgresError::Schema {
                database: self.to_string(),
                found,
            })
        }
    }
}

/// The highest schema version applied, or `None` without the schema table.
async fn schema_version<C: GenericClient>(
    client: &C,
) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('rmcp_authz_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    client
        .query_one("SELECT max(version) FROM rmcp_authz_schema", &[])
        .await
        .map(|row| row.get(0))
}

/// The driver's message, with the server's detail when there is one.
pub(super) fn driver_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// Applies the [`MIGRATIONS`] the database lacks, in one transaction, under a lock that
/// makes replicas starting together take turns. Returns the schema version.
///
/// # Errors
/// [`PostgresError::Query`] when a statement fails (nothing is then applied).
pub async fn migrate(database: &Database, client: &mut Client) -> Result<u32, PostgresError> {
    let fail = |e: tokio_postgres::Error| database.query_error(&e);
    let transaction = client.transaction().await.map_err(fail)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail)?;
    let current = schema_version(&transaction)
        .await
        .map_err(fail)?
        .unwrap_or(0);
    for (version, sql) in MIGRATIONS {
        if i64::from(*version) > i64::from(current) {
            transaction.batch_execute(sql).await.map_err(fail)?;
            tracing::info!(target: "rmcp_authz::postgres", %database, version, "schema migrated");
        }
    }
    transaction.commit().await.map_err(fail)?;
    Ok(SCHEMA_VERSION)
}
