//! The catalog: one SQLite file shared by every blockvault process on the host.

mod captures;
#[cfg(test)]
mod fixtures;
mod history;
mod jobs;
mod points;
mod policies;
mod protection;
mod space;
mod vaults;

pub use self::policies::{PolicyEntry, Put};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::watch;

use crate::{Error, Result};

/// The schema version this build writes, kept in `PRAGMA user_version`. A catalog with a newer
/// version is refused; an older one is migrated in [`Catalog::open`], one step of
/// `MIGRATIONS` at a time, in one transaction.
pub const SCHEMA_VERSION: i64 = 5;

/// How long a statement waits for another process's write transaction before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `MIGRATIONS[n]` takes a catalog from version n to n + 1 (version 0 is an empty file).
const MIGRATIONS: [&str; 5] = [SCHEMA_1, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5];

/// Version 1: jobs, their subtasks, VMs and points.
const SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS vms (
    name    TEXT PRIMARY KEY NOT NULL,
    vault   TEXT NOT NULL,
    disks   TEXT NOT NULL,                -- JSON array of paths
    updated INTEGER NOT NULL              -- microseconds since the Unix epoch
);

CREATE TABLE IF NOT EXISTS jobs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    vm        TEXT NOT NULL,
    operation TEXT NOT NULL,              -- Operation::key
    status    TEXT NOT NULL,              -- JobStatus::key
    started   INTEGER NOT NULL,
    ended     INTEGER,
    point     TEXT,
    error     TEXT,
    pid       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_started ON jobs (started);
CREATE INDEX IF NOT EXISTS jobs_by_vm ON jobs (vm, started);

CREATE TABLE IF NOT EXISTS subtasks (
    job            INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,         -- SubtaskKind::key
    status         TEXT NOT NULL,         -- SubtaskStatus::key
    started        INTEGER,
    ended          INTEGER,
    bytes_scanned  INTEGER NOT NULL DEFAULT 0,
    bytes_changed  INTEGER NOT NULL DEFAULT 0,
    bytes_uploaded INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    PRIMARY KEY (job, kind)
);

CREATE TABLE IF NOT EXISTS points (
    vm               TEXT NOT NULL,
    id               TEXT NOT NULL,
    time             INTEGER NOT NULL,
    consistency      TEXT NOT NULL,       -- Consistency as displayed
    in_snapshot      INTEGER NOT NULL DEFAULT 0,
    in_vault         INTEGER NOT NULL DEFAULT 0,
    snapshot_expires INTEGER,
    PRIMARY KEY (vm, id)
);
";

/// Version 2: policies and protected items (the default policy is added with it, see
/// [`migrate`]).
const SCHEMA_2: &str = "
CREATE TABLE policies (
    name    TEXT PRIMARY KEY NOT NULL,
    type    TEXT NOT NULL,                -- PolicyType::key
    body    TEXT NOT NULL,                -- the policy file (Policy::to_toml)
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);

CREATE TABLE protected (
    vm      TEXT PRIMARY KEY NOT NULL,
    vault   TEXT NOT NULL,
    disks   TEXT NOT NULL,                -- JSON array of paths
    policy  TEXT NOT NULL REFERENCES policies (name),
    hooks   TEXT NOT NULL,                -- JSON: pre, post, timeout_secs
    since   INTEGER NOT NULL,
    handled INTEGER                       -- the last schedule slot the scheduler handled
);
";

/// Version 3: the protection state of each item (SPEC "Protection lifecycle"): `protected`,
/// `stopped` (data retained) or `soft-deleted` (`ProtectionState::key`), when protection was
/// stopped, and when the data was deleted (purged 14 days later). Existing items stay
/// protected.
const SCHEMA_3: &str = "
ALTER TABLE protected ADD COLUMN state TEXT NOT NULL DEFAULT 'protected';
ALTER TABLE protected ADD COLUMN stopped INTEGER;   -- when protection was stopped
ALTER TABLE protected ADD COLUMN deleted INTEGER;   -- when the data was soft-deleted
";

/// Version 4: the id of the vault last seen at each location, so that a Snapshot names the
/// vault its point is for without waiting for the vault to open (see `vaults`).
const SCHEMA_4: &str = "
CREATE TABLE vaults (
    location TEXT PRIMARY KEY NOT NULL,   -- as the job was given it (never with credentials)
    id       TEXT NOT NULL,               -- VaultConfig::id
    seen     INTEGER NOT NULL             -- when it was last opened there
);
";

/// Version 5: a Snapshot's capture (`CaptureRecord` as JSON): how the instant was fixed, the
/// freeze window, how each disk's changes were found. Older subtasks have none.
const SCHEMA_5: &str = "
ALTER TABLE subtasks ADD COLUMN capture TEXT;
";

/// The job history and the inventory of VMs and recovery points of this host, in one SQLite
/// file (see the [crate documentation](crate) for its design).
///
/// Every method is one short transaction: writes take the write lock up front
/// (`BEGIN IMMEDIATE`) so that two processes never deadlock upgrading a read, and wait up to
/// 10 s for each other.
///
/// The methods block the calling thread (SQLite is synchronous, and a write may wait for
/// another process's). Async code calls them through [`Catalog::call`], which runs them on
/// the blocking pool. A `Catalog` is a handle: clones share one connection.
#[derive(Clone)]
pub struct Catalog {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Calls made through [`Catalog::call`] that have not ended (see [`Catalog::settled`]).
    in_flight: watch::Sender<usize>,
}

/// One call of [`Catalog::call`] in flight, from when it is made until its closure has run
/// or been dropped unrun.
struct InFlight(Catalog);

impl InFlight {
    fn new(catalog: &Catalog) -> InFlight {
        catalog.shared.in_flight.send_modify(|n| *n += 1);
        InFlight(catalog.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .shared
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("path", &self.shared.path)
            .finish()
    }
}

impl Catalog {
    /// Opens the catalog at `path`, creating the file, its parent directories and the schema
    /// when missing. Refuses a catalog written with a newer schema ([`Error::SchemaTooNew`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Catalog> {
        let path = path.as_ref().to_owned();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let conn =
            Connection::open(&path).map_err(|source| space::sqlite_error(path.clone(), source))?;
        init(&conn).map_err(|f| f.at(&path))?;
        Ok(Catalog {
            shared: Arc::new(Shared {
                path,
                conn: Mutex::new(conn),
                in_flight: watch::Sender::new(0),
            }),
        })
    }

    /// [`Catalog::open`] on the blocking pool (opening may wait up to 10 s for another process
    /// that is setting up or migrating the file).
    pub async fn open_async(path: impl Into<PathBuf>) -> Result<Catalog> {
        let path = path.into();
        crate::bridge::blocking(move || Catalog::open(path)).await
    }

    /// Runs `f` with this catalog on the blocking pool: how async code calls the catalog, so
    /// that no SQLite call (nor a wait for another process's write lock) runs on a runtime
    /// worker. Each method `f` calls is its own transaction, as when called directly. When
    /// the caller is cancelled, `f` still runs to its end.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Catalog) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let call = InFlight::new(self);
        crate::bridge::blocking(move || f(&call.0)).await
    }

    /// Waits until no call made through [`Catalog::call`] is running or queued, including the
    /// calls of callers that were cancelled (they run to their end regardless). A daemon that
    /// aborted its jobs waits for this before it reads what they left In progress.
    pub async fn settled(&self) {
        let mut in_flight = self.shared.in_flight.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), committed when `f` succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, Failure>) -> Result<T> {
        self.transaction(TransactionBehavior::Immediate, f)
    }

    /// Runs `f` in a read transaction, so that what it reads is one consistent state.
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, Failure>) -> Result<T> {
        self.transaction(TransactionBehavior::Deferred, f)
    }

    fn transaction<T>(
        &self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Failure>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let run = || {
            let tx = conn.transaction_with_behavior(behavior)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|f: Failure| f.at(&self.shared.path))
    }

    /// The connection. A panic while it was held rolled back the transaction it was in (the
    /// `Transaction` guard does that on drop), so a poisoned lock is still a usable connection.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.shared
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sets up a new connection: busy timeout, WAL, foreign keys, then the schema.
///
/// Switching a new file to WAL needs an exclusive lock, and SQLite answers "busy" at once,
/// without waiting, when two connections race for it (waiting could deadlock). Setup is
/// idempotent, so it is simply retried until the busy timeout.
fn init(conn: &Connection) -> Result<(), Failure> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match setup(conn) {
            Err(Failure::Sql(e)) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

fn setup(conn: &Connection) -> Result<(), Failure> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(Failure::TooNew(found));
    }
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Corrupt(format!(
            "cannot switch to WAL journal mode (it stays {mode:?})"
        )));
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    if found < SCHEMA_VERSION {
        // Another process may be migrating right now: decide again under the write lock.
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let found = user_version(&tx)?;
        if found > SCHEMA_VERSION {
            return Err(Failure::TooNew(found));
        }
        let start = usize::try_from(found)
            .map_err(|_| Failure::Corrupt(format!("unknown schema version {found}")))?;
        for (from, step) in MIGRATIONS.iter().enumerate().skip(start) {
            tx.execute_batch(step)?;
            migrate(&tx, from + 1)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(())
}

/// Data that comes with a schema version: version 2 starts with the default policy.
fn migrate(tx: &Transaction<'_>, to: usize) -> Result<(), Failure> {
    if to == 2 {
        policies::insert(tx, &crate::Policy::default_policy(), Timestamp::now())?;
    }
    Ok(())
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// An error inside a transaction, before the catalog's path is attached to it.
#[derive(Debug)]
enum Failure {
    Sql(rusqlite::Error),
    Corrupt(String),
    TooNew(i64),
    Other(Error),
}

impl Failure {
    fn at(self, path: &Path) -> Error {
        let path = path.to_owned();
        match self {
            Failure::Sql(source) => space::sqlite_error(path, source),
            Failure::Corrupt(what) => Error::Corrupt { path, what },
            Failure::TooNew(found) => Error::SchemaTooNew {
                path,
                found,
                supported: SCHEMA_VERSION,
            },
            Failure::Other(e) => e,
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        Failure::Sql(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Other(e)
    }
}

/// A timestamp as stored: microseconds since the Unix epoch (finer precision is dropped).
fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// A stored timestamp back; `what` names the column for the error.
fn timestamp(what: impl fmt::Display, value: i64) -> Result<Timestamp, Failure> {
    Timestamp::from_microsecond(value)
        .map_err(|e| Failure::Corrupt(format!("{what}: {value} is not a timestamp ({e})")))
}

fn optional_timestamp(
    what: impl fmt::Display,
    value: Option<i64>,
) -> Result<Option<Timestamp>, Failure> {
    value.map(|v| timestamp(what, v)).transpose()
}

/// A byte count as stored (SQLite integers are signed; no count comes near 2^63).
fn count_to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(what: impl fmt::Display, value: i64) -> Result<u64, Failure> {
    u64::try_from(value).map_err(|_| Failure::Corrupt(format!("{what}: negative count {value}")))
}

/// A stored text value parsed back into its type; `what` names the column for the error.
fn parse<T>(what: impl fmt::Display, value: &str) -> Result<T, Failure>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    value
        .parse()
        .map_err(|e| Failure::Corrupt(format!("{what}: {value:?} does not parse ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_send_sync_and_debug() {
        fn assert_traits<T: Send + Sync + fmt::Debug>() {}
        assert_traits::<Catalog>();
    }

    #[test]
    fn open_creates_parent_dirs_schema_and_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/nested/catalog.sqlite");
        let catalog = Catalog::open(&path).expect("open");
        assert_eq!(catalog.path(), path);
        assert!(format!("{catalog:?}").contains("catalog.sqlite"));
        let conn = catalog.lock();
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        drop(conn);
        drop(catalog);
        Catalog::open(&path).expect("reopen");
    }

    #[tokio::test]
    async fn call_runs_off_the_runtime_thread_on_the_shared_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open_async(dir.path().join("catalog.sqlite"))
            .await
            .expect("open");
        let runtime = std::thread::current().id();
        let vm: blockvault_core::VmName = "web01".parse().expect("vm");
        let (id, ran_on) = catalog
            .call(move |c| {
                let id = c.create_job(&vm, crate::Operation::Restore, &[], Timestamp::now())?;
                Ok((id, std::thread::current().id()))
            })
            .await
            .expect("call");
        assert_ne!(ran_on, runtime, "the catalog ran on the runtime's thread");
        // A clone is the same connection: what one wrote, the other reads.
        let clone = catalog.clone();
        assert_eq!(clone.job(id).expect("job").id, id);
        assert!(Arc::ptr_eq(&clone.shared, &catalog.shared));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settled_waits_for_the_calls_of_cancelled_callers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open_async(dir.path().join("catalog.sqlite"))
            .await
            .expect("open");
        let (entered, was_entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = Arc::clone(&done);
        let slow = catalog.clone();
        let caller = tokio::spawn(async move {
            slow.call(move |_| {
                let _ = entered.send(());
                let _ = released.recv();
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await
        });
        crate::bridge::blocking(move || was_entered.recv().expect("entered")).await;
        caller.abort();
        assert!(caller.await.expect_err("aborted").is_cancelled());
        let settled = catalog.settled();
        tokio::pin!(settled);
        let early = tokio::time::timeout(Duration::from_millis(50), &mut settled).await;
        assert!(early.is_err(), "settled while a call still ran");
        release.send(()).expect("release");
        settled.await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn newer_schema_is_refused_naming_the_file_and_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.sqlite");
        {
            let conn = Connection::open(&path).expect("sqlite");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("version");
        }
        let err = Catalog::open(&path).expect_err("too new");
        assert!(
            matches!(
                &err,
                Error::SchemaTooNew { path: p, found: 6, supported: 5 } if *p == path
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("catalog.sqlite") && message.contains("version 6"),
            "{message}"
        );
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.sqlite");
        std::fs::write(&path, vec![0x42; 4096]).expect("write");
        let err = Catalog::open(&path).expect_err("garbage");
        assert!(
            matches!(&err, Error::Sqlite { path: p, .. } if *p == path),
            "{err:?}"
        );
    }
}
