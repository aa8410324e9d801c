//! Jobs and the catalog: what blockvault did, is doing, and knows about on this host.
//!
//! # Jobs
//!
//! A [`Job`] is one [`Operation`] on one VM (`Backup`, `Backup (on demand)`, `Restore`, ...),
//! recorded from the moment it starts: id, VM, status, start and end, the process that runs it,
//! the recovery point it made, and the error if any. A backup job has two [`Subtask`]s that run
//! in order, **Snapshot** (every disk into the local snapshot tier) then **Transfer data to
//! vault** (the churn since the last vault point); each records its status, timings and bytes
//! scanned / changed / uploaded. Transfer starts only after Snapshot completes, and is
//! **Skipped** when an earlier job's transfer of the same VM is still running.
//!
//! The status of a backup job follows its subtasks ([`job_status`], the Azure table):
//!
//! | Snapshot | Transfer | Job |
//! |---|---|---|
//! | Completed | In progress | In progress |
//! | Completed | Skipped | Completed |
//! | Completed | Completed | Completed |
//! | Completed | Failed | Completed with warning |
//! | Failed | (any) | Failed |
//!
//! (and In progress while either subtask is Pending or In progress; see [`job_status`] for the
//! states the table leaves out). A job without the two backup subtasks is Failed if one of its
//! subtasks failed, else Completed. A job ends in one of two ways: [`Catalog::finish_job`] once
//! every subtask has ended, computing the status; or [`Catalog::fail_job`], which fails the job
//! and every subtask still pending or running with one error.
//!
//! # The catalog
//!
//! [`Catalog`] is one SQLite file, `STATE_DIR/catalog.sqlite`, holding the job history, the
//! VMs this host protects and the recovery points it knows with their tiers. Its schema version
//! is `PRAGMA user_version` ([`SCHEMA_VERSION`]); a file with a newer version is refused, never
//! guessed at. Timestamps are stored as integer microseconds since the Unix epoch; enums as
//! their stable kebab-case keys ([`Operation::key`], ...); VM names, point ids and consistency
//! as they display.
//!
//! Several processes use the file at once (two `blockvault backup` commands started together,
//! a `blockvault jobs` reading while they run). The file is in WAL mode, so readers never block
//! the writer; every method is one short transaction, writes take the write lock up front
//! (`BEGIN IMMEDIATE`) and wait up to 10 s for another process's. Job ids come from an
//! `AUTOINCREMENT` key: unique across processes and never reused. Within a process a `Catalog`
//! is a handle to one connection behind a mutex; clones share it.
//!
//! SQLite blocks the calling thread (and a write may wait up to 10 s for another process's),
//! so no catalog call runs on a tokio runtime worker: the engine and the daemon make every
//! call through [`Catalog::call`], which runs it on tokio's blocking pool (one bridge for
//! everything that blocks: the catalog, and waiting for a VM's lock). The methods themselves
//! stay synchronous for synchronous callers and tests. A blocking call whose caller is
//! cancelled still runs to its end, so a transaction is never cut halfway.
//!
//! # The engine
//!
//! [`Engine`] runs jobs on this host. [`Engine::backup`] runs the Snapshot subtask (pre-snapshot
//! hook, every disk read once into the VM's directory of the snapshot tier, post-snapshot hook;
//! see `blockvault-snapshot`; a disk in a QEMU format (qcow2, vmdk, vdi, vhdx, vpc, qed; an
//! overlay with its backing chain, its reflink clone with the disk's own chain) is read through
//! a `qemu-nbd` the Snapshot starts and stops, see `engine/capture.rs`, and a qcow2 disk's
//! changes since the parent point come from the QEMU dirty bitmap the parent's Snapshot added
//! to it, see `engine/bitmaps.rs` (the other formats cannot hold one: a full scan, the reason
//! on the job); a running VM's disks
//! are fixed by one QMP transaction and read from QEMU's fleecing exports, see
//! `engine/fleece.rs`) and then the Transfer subtask ([`blockvault_vault::Vault::transfer`]
//! from that snapshot, never from the live disks). The Snapshot never waits for the vault: a
//! [`JobVault`] may still be opening when the job starts (an S3 endpoint that does not answer
//! costs its timeouts); it opens alongside the Snapshot, the early send starts when it is
//! open, and only the Transfer waits for it (and fails with its error when it does not open).
//! Each snapshot point names the vault it is for: the open vault's id, or while it is still
//! opening the id this host last saw at that location (the catalog's `vaults`), corrected in
//! the snapshot tier once the vault opens. The VM's tier is encoded with its vault's codec (an
//! encrypted vault's key, unlocked through the engine's keyring,
//! [`Engine::open_with_keyring`]), learned without waiting for the vault, and a tier under
//! another key is started fresh; the Transfer never copies between two codecs (see
//! `engine/tier_key.rs`). [`Engine::restore`] picks the point among
//! both tiers and reads it from the snapshot tier when it is there: where the tier kept a
//! reflink clone of a disk, by cloning it back (into a new file, or in place only the extents
//! that differ; milliseconds whatever the size), else from its chunks; the outcome says which
//! ([`RestoreOutcome::restored_by`]), and each disk's format: the point's, or the one
//! [`Engine::restore_as`] asks for (a disk in a QEMU format is staged raw and converted by
//! `qemu-img` into a standalone image, see `engine/restore_format.rs`). A Snapshot decides each disk's format in
//! `engine/disk_format.rs`: as said, or by the header when it did not change since the
//! previous point. [`Engine::protect`] says, per disk, how its backups will read it and where
//! their changes will come from (`engine/tracking.rs`; through QEMU's monitor with `--qmp`).
//! [`Engine::list_points`] rebuilds the catalog's view of
//! both tiers from the stores as it lists, with what each point's kept clones hold alone.
//!
//! Exclusivity is enforced with `flock` on files in `STATE_DIR/locks/`, so it holds across
//! processes and within one: `<vm>.snapshot` is held for the whole Snapshot subtask (a second
//! Snapshot of the VM waits for it) and around snapshot expiry and sweeps; `<vm>.transfer` is
//! tried when a Transfer would start, and when another job holds it the Transfer is Skipped.
//!
//! # Job events
//!
//! Every step of a job the engine runs is published, once the catalog has recorded it, as a
//! [`JobEvent`] on a broadcast stream ([`Engine::subscribe`]): `Started`, `PhaseStarted` and
//! `PhaseEnded` for each subtask, `Progress` while data moves (the vault's
//! [`Progress`](blockvault_vault::Progress) hook, adapted by the engine), `Warning`, and
//! `Finished` with the job's status. Publishing never waits: a subscriber that falls
//! [`EVENT_CAPACITY`] events behind loses the oldest, never slows or fails a job. The CLI's
//! progress bar and the daemon's log of finished backups are subscribers.
//!
//! # Policies, protection and the daemon
//!
//! Policies are pure values of the `blockvault-policy` crate, re-exported here; this crate
//! stores them and runs them. A [`Policy`] (Standard or Enhanced; SPEC "Policies") is built
//! only through [`Policy::from_doc`] / [`Policy::from_toml`], which apply its type's defaults
//! and refuse any value out of range with a [`PolicyError`] naming the field, the value and
//! the range. The catalog stores each policy as its TOML file and starts with [`DEFAULT_POLICY`]. Its
//! [`Schedule`] is a pure function of (schedule, time zone, instants): [`Schedule::slots`],
//! [`Schedule::next`], and [`transfers`] (the Enhanced hourly rule: the last backup of each
//! local day goes to the vault, or the next day's first when that one did not). Daylight
//! saving: a skipped local time runs once at the transition, a repeated one once, first.
//!
//! [`Engine::protect`] records a [`ProtectedItem`] (VM, vault, disks, policy, hooks) in a
//! `Configure backup` job, or migrates a Standard VM to Enhanced in a `Configure backup
//! (Migrate policy)` backup job; [`Engine::backup_now`] runs an on-demand backup whose point
//! carries `retain until`. The [`Daemon`] runs every protected VM's schedule through the
//! engine (its module documents the restart and shutdown rules), and reads a share of each
//! vault's chunks a day ([`Engine::verify_share`]) so that every vault is verified whole every
//! [`DaemonOptions::verify_every_days`] days.
//!
//! Protection is also recorded in the vault, so one host protects a VM at a time: a
//! [`ProtectionRecord`](blockvault_core::ProtectionRecord) names the holder (this host's
//! [`Engine::identity`], kept in `STATE/host.json`), written before the catalog row;
//! [`Engine::protect`] refuses a VM another host holds ([`Error::HeldByAnotherHost`]) unless
//! asked to take it over, and lists the points the policy's retention will remove
//! ([`DoomedPoint`]); [`Engine::reconcile_holdings`] (at daemon start) mends a record a crash
//! left behind and stops VMs another host took over (`engine/holder.rs` has the write order).
//!
//! Protection ends with [`Engine::stop_protection`]: *retain data* leaves the item
//! [`ProtectionState::Stopped`] (no backups; its points are kept as they are), *delete data*
//! soft-deletes them for 14 days ([`ProtectionState::SoftDeleted`], and a
//! [`SoftDeleteMarker`](blockvault_core::SoftDeleteMarker) in the vault for every other
//! host), after which [`Engine::purge`] (run by the daemon) deletes them; [`Engine::undelete`]
//! brings them back before that. [`ProtectedItem::is_protected`] tells whether protection is
//! on: only then does the daemon schedule the VM, or may retention expire its points. Time
//! comes from a [`Clock`]:
//! the system's, or a [`SimulatedClock`] that drives weeks of schedule in seconds in tests.
//!
//! # Crash semantics
//!
//! Each catalog method commits or does nothing. Every job holds the lock
//! `STATE_DIR/locks/job-<id>` from before its row is committed ([`Catalog::create_job_with`])
//! until it has ended, when the file is removed; the kernel releases the lock when the process
//! dies. So when an engine opens ([`Engine::open`]), an In-progress job whose lock it can take,
//! or whose lock file is gone, has no process behind it, whatever moment the kill came: it is
//! marked Failed at once ([`Catalog::fail_job`]), and what it left in the snapshot tier (chunks
//! and maps of an uncommitted snapshot) is swept. Its end time is when its process was last
//! known alive: a running job touches its lock file every 5 s, so that is at most 5 s before it
//! died (never before the last step the job recorded). Lock files of ended jobs that are still
//! there (their process died between ending the job and removing the file) are removed too.
//! Points that were committed are untouched: the stores commit a point by writing its record
//! last.
//!
//! # The stores are the truth
//!
//! Recovery points live in the stores: the local snapshot tier on the host and the vault. The
//! catalog's [`PointEntry`] rows are a view for listing (which tiers hold a point, when it
//! leaves the snapshot tier), updated as jobs add and retention removes points
//! ([`Catalog::add_point_tier`], [`Catalog::remove_point_tier`]). When they disagree the store
//! wins: [`Catalog::sync_tier`] rebuilds a tier's view from a listing of that store, so a lost
//! or stale catalog costs nothing but a rebuild. Jobs, on the other hand, exist only here.

mod bridge;
mod capture_record;
mod catalog;
mod clock;
mod daemon;
mod engine;
mod error;
mod events;
mod inventory;
mod job;
mod model;

pub use crate::{
    capture_record::{CaptureRecord, ChangesFrom, DiskCapture, Resized},
    catalog::{Catalog, SCHEMA_VERSION},
    catalog::{PolicyEntry, Put},
    clock::{Clock, SimulatedClock, Sleep, SystemClock},
    daemon::{DEFAULT_VERIFY_EVERY_DAYS, Daemon, DaemonOptions, DaemonReport, Level, Log},
    engine::{
        BackupOutcome, BackupSpec, CaptureMode, CaptureOptions, DiskRestore, DoomedPoint, Engine,
        ExpiredPoint, ForgetOutcome, ForgetRequest, ForgetTarget, Holding, Hooks,
        INSTANT_RESTORE_DAYS, JobVault, KeptPoint, ListedPoint, PointList, ProtectOutcome,
        ProtectRequest, Pruned, PurgeOutcome, Recovered, RestoreMethod, RestoreOutcome, StopMode,
        StopOutcome, VaultUnavailable, Vaults, VerifyOutcome, VerifyScope,
    },
    error::{Error, Result},
    events::{EVENT_CAPACITY, JobEvent, JobEventKind, PROGRESS_EVERY},
    inventory::{PointEntry, PointSummary, ProtectedItem, ProtectionState, VmEntry},
    job::{Job, JobFilter, Subtask, SubtaskOutcome},
    model::{
        JobId, JobStatus, Operation, ParseError, SubtaskKind, SubtaskStatus, Tier, Tiers,
        job_status,
    },
};
/// Policies live in `blockvault-policy`; these are the names this crate has always exported.
pub use blockvault_policy::{
    DEFAULT_POLICY, KeepReason, KeepRule, KeepRules, MonthDay, MonthlyRetention, Policy, PolicyDoc,
    PolicyError, PolicyName, PolicyType, RetainedPoint, Retention, RetentionDoc, Schedule,
    ScheduleDoc, Slot, Verdict, WeeklyRetention, YearlyRetention, parse_timezone, retention,
    transfers,
};
