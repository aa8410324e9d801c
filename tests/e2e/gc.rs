//! Garbage collection of a vault: what it frees, and what it must never free (chunks of a
//! backup committing while it runs, chunks of live points after a collection was killed).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use blockvault_core::{BlockMap, ChunkId, PointId};
use blockvault_vault::{
    BackupReport, BackupRequest, GcOptions, GcReport, NoProgress, PointSelector, Progress, Vault,
};
use futures::TryStreamExt;

use crate::support::{Image, Write, backup, block_size, chunk_files, new_vault, restore, vm};

const BS: u64 = 64 << 10;

fn options() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        wait: Duration::from_secs(60),
        poll: Duration::from_millis(50),
        dry_run: false,
        concurrency: 4,
        ..GcOptions::default()
    }
}

fn dry_run() -> GcOptions {
    GcOptions {
        dry_run: true,
        ..options()
    }
}

async fn gc(vault: &Vault, options: GcOptions) -> GcReport {
    vault
        .collect_garbage(options, Arc::new(NoProgress))
        .await
        .expect("gc")
}

/// An image of 64 blocks of noise, each distinct.
fn image(dir: &std::path::Path) -> Image {
    let mut image = Image::create(dir.join("disk.img"), 64 * BS);
    image.apply(Write {
        offset: 0,
        len: (64 * BS) as usize,
        kind: 2,
    });
    image
}

/// Rewrites `blocks` blocks from block `first` with fresh noise.
fn churn(image: &mut Image, first: u64, blocks: u64, kind: u8) {
    image.apply(Write {
        offset: first * BS,
        len: (blocks * BS) as usize,
        kind,
    });
}

#[tokio::test]
async fn gc_frees_exactly_what_no_point_names_and_the_rest_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let vault_dir = dir.path().join("vault");
    let mut disk = image(dir.path());
    let first = backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("1");
    churn(&mut disk, 0, 8, 4);
    backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("2");
    churn(&mut disk, 8, 8, 6);
    let third = backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("3");
    let all = chunk_files(&vault_dir).len();
    assert_eq!(all, 64 + 8 + 8, "every distinct block stored once");

    // Nothing is garbage while every point lives.
    let report = gc(&vault, options()).await;
    assert_eq!(
        (report.chunks, report.chunks_live, report.chunks_deleted),
        (80, 80, 0)
    );

    // A backup that wrote maps and never committed leaves an orphan map directory.
    let orphan = PointId::generate(jiff::Timestamp::now(), b"killed");
    let map = BlockMap::from_ids(
        BS,
        block_size(BS),
        jiff::Timestamp::now(),
        vec![ChunkId::ZERO],
    )
    .expect("map");
    vault
        .store()
        .put_map(
            &vm("web"),
            &orphan,
            &"disk.img".parse().expect("name"),
            &map,
        )
        .await
        .expect("put map");

    // Damage marks (from verify) on a chunk that becomes garbage and on one that stays live:
    // the sweep clears the first only.
    let first_map = vault
        .store()
        .get_map(
            &vm("web"),
            &first.point.id,
            &"disk.img".parse().expect("name"),
            None,
        )
        .await
        .expect("map");
    let (doomed, kept) = (
        first_map.get(3).expect("a block of the map"),
        first_map.get(40).expect("a block of the map"),
    );
    for id in [doomed, kept] {
        vault.store().mark_damaged(&id).await.expect("mark");
    }

    // The first point goes (retention): its 8 blocks that the others replaced are garbage.
    vault
        .store()
        .delete_point(&vm("web"), &first.point.id)
        .await
        .expect("delete");
    let dry = gc(&vault, dry_run()).await;
    assert_eq!(dry.chunks_deleted, 8, "the dry run counts the garbage");
    assert_eq!(chunk_files(&vault_dir).len(), all, "and deletes nothing");

    let report = gc(&vault, options()).await;
    assert_eq!(report.chunks_deleted, 8);
    assert_eq!(report.chunks_live, 72);
    assert!(report.bytes_freed > 0);
    assert_eq!(chunk_files(&vault_dir).len(), 72);
    assert_eq!(
        vault.store().damaged_chunks().await.expect("damaged"),
        vec![kept],
        "the mark of the deleted chunk is cleared, the live one's kept"
    );
    assert!(
        vault
            .store()
            .list_map_point_ids(&vm("web"))
            .await
            .expect("list")
            .iter()
            .all(|id| *id != orphan),
        "the orphan map is gone"
    );

    // Every remaining point restores byte for byte; the newest is the disk as it is.
    let target = dir.path().join("out");
    restore(
        &vault,
        "web",
        PointSelector::Id(third.point.id.to_string()),
        &target,
    )
    .await
    .expect("restore");
    assert_eq!(
        std::fs::read(target.join("disk.img")).expect("read"),
        disk.content
    );
    let again = gc(&vault, options()).await;
    assert_eq!(again.chunks_deleted, 0, "a second collection finds nothing");
}

/// Stalls in the first `advance` of a backup's scan, so the backup is still running (holding
/// its writer lease, its parent's maps read) while the collection marks and waits: until
/// `release` is set, or `at_most` has passed.
struct Slow {
    slept: AtomicU64,
    scanning: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    at_most: Duration,
}

impl Progress for Slow {
    fn begin(&self, _phase: &str, _total: u64) {
        self.scanning.store(true, Ordering::SeqCst);
    }
    fn advance(&self, _bytes: u64) {
        if self.slept.fetch_add(1, Ordering::Relaxed) == 0 {
            let started = std::time::Instant::now();
            while !self.release.load(Ordering::SeqCst) && started.elapsed() < self.at_most {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A crash-consistent backup of `vm_name` holding the one disk `disk`, at blocks of `BS`.
fn backup_request(vm_name: &str, disk: &std::path::Path) -> BackupRequest {
    BackupRequest {
        vm: vm(vm_name),
        disks: vec![disk.into()],
        block_size: Some(block_size(BS)),
        consistency: blockvault_core::Consistency::CrashConsistent,
        capture: None,
        options: Default::default(),
        time: None,
        retain_until: None,
        id: None,
        vault: None,
    }
}

/// Starts a backup of `disk` whose scan stalls 1.5 s after its first block (holding its
/// writer lease), and returns once the scan has begun.
async fn slow_backup(
    vault: &Vault,
    vm_name: &str,
    disk: &std::path::Path,
) -> tokio::task::JoinHandle<blockvault_vault::Result<BackupReport>> {
    let never = Arc::new(AtomicBool::new(false));
    stalled_backup(vault, vm_name, disk, never, Duration::from_millis(1500)).await
}

/// [`slow_backup`] stalling until `release` is set (or `at_most` has passed).
async fn stalled_backup(
    vault: &Vault,
    vm_name: &str,
    disk: &std::path::Path,
    release: Arc<AtomicBool>,
    at_most: Duration,
) -> tokio::task::JoinHandle<blockvault_vault::Result<BackupReport>> {
    let scanning = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let (vault, request) = (vault.clone(), backup_request(vm_name, disk));
        let slow = Slow {
            slept: AtomicU64::new(0),
            scanning: Arc::clone(&scanning),
            release,
            at_most,
        };
        async move { vault.backup(&request, Arc::new(slow)).await }
    });
    while !scanning.load(Ordering::SeqCst) {
        assert!(!running.is_finished(), "the backup ended before its scan");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running
}

async fn assert_no_lease_left(vault: &Vault) {
    let leases = vault.store().list_leases().await.expect("leases");
    assert!(leases.is_empty(), "no lease is left behind: {leases:?}");
}

async fn chunks_in(vault: &Vault) -> HashSet<ChunkId> {
    vault
        .store()
        .list_chunks()
        .try_collect()
        .await
        .expect("list chunks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_during_a_backup_that_reuses_old_chunks_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    gc_during_a_backup_reusing_a_deleted_points_chunks(&vault, dir.path()).await;
}

/// A sweep that waited `hold_after` for a running backup holds a backup that starts then:
/// the running one commits, the sweep runs, and only then does the held one start; both
/// commit and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_kept_waiting_holds_new_backups_back_until_it_has_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let mut db = Image::create(dir.path().join("db.img"), 16 * BS);
    db.apply(Write {
        offset: 0,
        len: (16 * BS) as usize,
        kind: 2,
    });
    let mut web = Image::create(dir.path().join("web.img"), 16 * BS);
    web.apply(Write {
        offset: 0,
        len: (16 * BS) as usize,
        kind: 3,
    });

    // Garbage, so that the collection has something to sweep and a sweep to wait for: without
    // it, the collection sweeps only if the running backup's first chunks have landed when it
    // lists, and a loaded machine may not have stored any yet (it then ends at once).
    let orphan = b"a chunk no point names";
    let (orphan_id, encoded) = vault.store().codec().encode_one(orphan).expect("encoder");
    vault
        .store()
        .put_chunk(&orphan_id, encoded.into())
        .await
        .expect("put the orphan");

    // A backup whose scan stalls until the held one is waiting holds its writer lease
    // meanwhile (however slowly a busy machine runs the collection up to its hold).
    let release = Arc::new(AtomicBool::new(false));
    let running = stalled_backup(
        &vault,
        "db",
        &db.path,
        Arc::clone(&release),
        Duration::from_secs(60),
    )
    .await;
    let collecting = tokio::spawn({
        let vault = vault.clone();
        let options = GcOptions {
            hold_after: Duration::from_millis(100),
            hold_for: Duration::from_secs(60),
            ..options()
        };
        async move { vault.collect_garbage(options, Arc::new(NoProgress)).await }
    });
    // Once the hold is up, a second backup starts.
    loop {
        let leases = vault.store().list_leases().await.expect("leases");
        let holding = leases.iter().any(|l| {
            l.record
                .as_ref()
                .is_some_and(|r| r.kind == blockvault_core::LeaseKind::SweepPending)
        });
        if holding {
            break;
        }
        if collecting.is_finished() {
            let outcome = collecting.await.expect("join");
            panic!("the collection ended unheld: {outcome:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = tokio::spawn({
        let (vault, request) = (vault.clone(), backup_request("web", &web.path));
        async move { vault.backup(&request, Arc::new(NoProgress)).await }
    });
    // Long enough that the held backup has waited the second its warning needs.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    release.store(true, Ordering::SeqCst);

    running
        .await
        .expect("join")
        .expect("the running backup commits");
    let report = collecting
        .await
        .expect("join")
        .expect("the collection runs");
    let second = held.await.expect("join").expect("the held backup commits");
    assert!(
        report.held_seconds > 0.3 && report.held_seconds < report.waited_seconds,
        "held new backups back while it waited: {report:?}"
    );
    assert!(
        second
            .warnings
            .iter()
            .any(|w| w.contains("garbage collection")),
        "the held backup says why it waited: {:?}",
        second.warnings
    );
    assert!(
        report.chunks_deleted >= 1 && !chunks_in(&vault).await.contains(&orphan_id),
        "the sweep ran and took the orphan: {report:?}"
    );
    assert_no_lease_left(&vault).await;
    let out = dir.path().join("out");
    restore(&vault, "web", PointSelector::Latest, &out)
        .await
        .expect("restore");
    assert_eq!(
        std::fs::read(out.join("web.img")).expect("read"),
        web.content
    );
}

/// The scenario the lease protocol exists for, on any store (`s3_gc.rs` runs it on Garage):
/// a backup that takes a point's chunks as present is running; the point is deleted; the
/// collection marks (no point names a chunk), waits for the backup, sees its point, and
/// deletes exactly the chunks nothing names. The point restores byte for byte.
pub(crate) async fn gc_during_a_backup_reusing_a_deleted_points_chunks(
    vault: &Vault,
    dir: &std::path::Path,
) {
    let mut disk = Image::create(dir.join("disk.img"), 64 * BS);
    disk.apply(Write {
        offset: 0,
        len: (64 * BS) as usize,
        kind: 2,
    });
    let first = backup(vault, "db", &[&disk], block_size(BS))
        .await
        .expect("first backup");
    assert_eq!(chunks_in(vault).await.len(), 64, "64 distinct blocks");
    disk.apply(Write {
        offset: 0,
        len: (4 * BS) as usize,
        kind: 8,
    });

    // The next backup starts: it takes the first point's chunks as present (from its maps)
    // and will name them without uploading them.
    let running = slow_backup(vault, "db", &disk.path).await;
    // Meanwhile the first point is deleted (retention): at the mark no point names a chunk.
    vault
        .store()
        .delete_point(&vm("db"), &first.point.id)
        .await
        .expect("delete the first point");
    let options = GcOptions {
        wait: Duration::from_secs(120),
        ..options()
    };
    let report = vault
        .collect_garbage(options, Arc::new(NoProgress))
        .await
        .expect("gc");
    let second = running.await.expect("join").expect("the backup commits");

    assert!(
        report.waited_seconds > 0.1,
        "the sweep waited for the backup: {report:?}"
    );
    assert_eq!(report.chunks_live, 0, "no point was live at the mark");
    assert!(
        report.chunks_rescued == 60 || report.chunks_rescued == 64,
        "the reused chunks were kept: {report:?}"
    );
    assert_eq!(report.chunks_deleted, 4, "only the 4 replaced blocks went");
    assert_eq!(second.point.parent, Some(first.point.id.clone()));
    assert_no_lease_left(vault).await;

    // What is left in the bucket is exactly what the committed point names.
    let map = vault
        .store()
        .get_map(
            &vm("db"),
            &second.point.id,
            &second.point.disks[0].name,
            Some(&second.point.disks[0].map_digest),
        )
        .await
        .expect("map");
    let named: HashSet<ChunkId> = map
        .data_ids()
        .iter()
        .copied()
        .filter(|id| !id.is_zero())
        .collect();
    assert_eq!(named.len(), 64);
    assert_eq!(
        chunks_in(vault).await,
        named,
        "exactly the unreferenced chunks went"
    );

    // The point committed during the collection restores byte for byte, from a fresh handle.
    let reopened = Vault::open(vault.store().clone()).await.expect("open");
    let out = dir.join("out");
    restore(&reopened, "db", PointSelector::Latest, &out)
        .await
        .expect("the point committed during the collection restores");
    assert!(
        std::fs::read(out.join("disk.img")).expect("read") == disk.content,
        "restored byte for byte"
    );
    let again = vault
        .collect_garbage(options, Arc::new(NoProgress))
        .await
        .expect("gc again");
    assert_eq!(again.chunks_deleted, 0, "a second collection finds nothing");
}

/// Two points of VM "app" (64 noise blocks, then `churned` of them rewritten), the first
/// deleted: its `churned` replaced blocks are garbage. Returns the disk and its first content.
async fn first_point_garbage(
    vault: &Vault,
    dir: &std::path::Path,
    churned: u64,
) -> (Image, Vec<u8>) {
    let mut disk = image(dir);
    let original = disk.content.clone();
    let first = backup(vault, "app", &[&disk], block_size(BS))
        .await
        .expect("1");
    churn(&mut disk, 0, churned, 10);
    backup(vault, "app", &[&disk], block_size(BS))
        .await
        .expect("2");
    vault
        .store()
        .delete_point(&vm("app"), &first.point.id)
        .await
        .expect("delete");
    (disk, original)
}

/// Panics at the `n`-th chunk the sweep deletes: a collector killed halfway.
struct DieAfter {
    n: u64,
    seen: AtomicU64,
}

impl Progress for DieAfter {
    fn begin(&self, phase: &str, _total: u64) {
        if phase == "sweep" {
            self.seen.store(0, Ordering::Relaxed);
        }
    }
    fn advance(&self, bytes: u64) {
        // The mark advances by maps (1 each); the sweep by chunk sizes.
        if bytes > 1 && self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.n {
            panic!("collector killed");
        }
    }
}

#[tokio::test]
async fn a_collection_killed_halfway_loses_nothing_live_and_the_next_one_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let vault = new_vault(dir.path()).await.with_state_dir(&state);
    let vault_dir = dir.path().join("vault");
    let (mut disk, original) = first_point_garbage(&vault, dir.path(), 40).await;

    let killed = tokio::spawn({
        let vault = vault.clone();
        async move {
            vault
                .collect_garbage(
                    GcOptions {
                        concurrency: 1,
                        ..options()
                    },
                    Arc::new(DieAfter {
                        n: 10,
                        seen: AtomicU64::new(0),
                    }),
                )
                .await
        }
    });
    assert!(killed.await.expect_err("killed").is_panic());
    let left = chunk_files(&vault_dir).len();
    assert_eq!(left, 64 + 40 - 10, "killed after 10 of the 40 deletions");
    let check = dir.path().join("after-kill");
    restore(&vault, "app", PointSelector::Latest, &check)
        .await
        .expect("nothing live was lost");
    assert_eq!(
        std::fs::read(check.join("disk.img")).expect("read"),
        disk.content
    );

    // The next collection finishes the job.
    let report = gc(&vault, options()).await;
    assert_eq!(
        report.chunks_deleted, 30,
        "the 30 the killed run left behind"
    );
    assert_eq!(gc(&vault, options()).await.chunks_deleted, 0);

    // This host's chunk index was saved before either sweep and still lists the first point's
    // chunks; the vault's new GC epoch makes the next backup distrust it. Put the first
    // point's content back: its 40 deleted chunks must be sent again, not taken as present.
    assert_sent_again(&vault, &mut disk, &original, 40, dir.path()).await;
}

/// A sweep whose delete fails after it removed the object (here: a replicated vault whose
/// secondary refuses one delete after the primary's went through) must not leave this host's
/// chunk index claiming the chunk under the new GC epoch: the next backup would skip it and
/// commit a point naming a chunk the vault lacks.
#[tokio::test]
async fn a_sweep_that_fails_halfway_leaves_no_deleted_chunk_in_this_hosts_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, _, secondary) = replicated_vault(dir.path()).await;
    let vault = vault.with_state_dir(dir.path().join("state"));
    let (mut disk, original) = first_point_garbage(&vault, dir.path(), 4).await;

    // The secondary will refuse to delete every garbage chunk (a directory where its file
    // was), after the primary deleted it.
    let second_map = {
        let point = vault
            .latest_point(&vm("app"))
            .await
            .expect("latest")
            .expect("one");
        vault
            .store()
            .get_map(&point.vm, &point.id, &point.disks[0].name, None)
            .await
            .expect("map")
    };
    let live: HashSet<String> = second_map
        .data_ids()
        .iter()
        .map(|id| id.to_hex().to_string())
        .collect();
    let doomed: Vec<_> = chunk_files(&secondary)
        .into_iter()
        .filter(|p| !live.contains(&p.file_name().expect("name").to_string_lossy().to_string()))
        .collect();
    assert_eq!(doomed.len(), 4, "the 4 replaced blocks are garbage");
    for path in &doomed {
        std::fs::remove_file(path).expect("remove");
        std::fs::create_dir_all(path.join("x")).expect("a directory instead");
    }
    let failed = vault
        .collect_garbage(
            GcOptions {
                concurrency: 1,
                ..options()
            },
            Arc::new(NoProgress),
        )
        .await;
    assert!(failed.is_err(), "the secondary refused: {failed:?}");
    // The secondary's trouble passes (and its copies are gone: the primary deleted its own).
    for path in &doomed {
        std::fs::remove_dir_all(path).expect("clear");
    }

    // The first point's content again: its deleted chunks must go up again, not be taken as
    // present from this host's index.
    assert_sent_again(&vault, &mut disk, &original, 4, dir.path()).await;
}

/// A vault replicated from `dir/primary` to `dir/secondary`; returns both directories too.
async fn replicated_vault(
    dir: &std::path::Path,
) -> (Vault, std::path::PathBuf, std::path::PathBuf) {
    let (primary, secondary) = (dir.join("primary"), dir.join("secondary"));
    std::fs::create_dir(&primary).expect("primary");
    std::fs::create_dir(&secondary).expect("secondary");
    let vault = Vault::init_replicated(
        blockvault_store::Store::local(&primary).expect("store"),
        blockvault_store::Store::local(&secondary).expect("store"),
    )
    .await
    .expect("init");
    (vault, primary, secondary)
}

/// The latest point of `vm_name` restores into `target` as `expected`, byte for byte.
async fn assert_latest_restores(
    vault: &Vault,
    vm_name: &str,
    target: &std::path::Path,
    expected: &[u8],
) {
    restore(vault, vm_name, PointSelector::Latest, target)
        .await
        .expect("restore");
    assert_eq!(
        std::fs::read(target.join("disk.img")).expect("read"),
        expected
    );
}

/// Puts `original` back on `disk` and backs it up: exactly `deleted` chunks must go up again
/// (a sweep removed them; a stale chunk index would skip them), and the point restores.
async fn assert_sent_again(
    vault: &Vault,
    disk: &mut Image,
    original: &[u8],
    deleted: u64,
    dir: &std::path::Path,
) {
    std::fs::write(&disk.path, original).expect("rewrite");
    disk.content = original.to_vec();
    let again = backup(vault, "app", &[disk], block_size(BS))
        .await
        .expect("backup");
    assert_eq!(
        again.point.stats.chunks_stored, deleted,
        "the deleted chunks went up again"
    );
    let target = dir.join("sent-again");
    restore(vault, "app", PointSelector::Latest, &target)
        .await
        .expect("the new point restores");
    assert_eq!(
        std::fs::read(target.join("disk.img")).expect("read"),
        original
    );
}

#[tokio::test]
async fn a_failed_backup_leaves_no_lease_to_hold_off_a_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let missing = Image {
        path: dir.path().join("missing.img"),
        content: Vec::new(),
    };
    backup(&vault, "gone", &[&missing], block_size(BS))
        .await
        .expect_err("the disk is missing");
    assert!(
        vault
            .store()
            .list_leases()
            .await
            .expect("leases")
            .is_empty(),
        "the failed backup released its lease"
    );
    let report = vault
        .collect_garbage(
            GcOptions {
                wait: Duration::from_millis(300),
                ..options()
            },
            Arc::new(NoProgress),
        )
        .await
        .expect("nothing holds the vault");
    assert_eq!(report.chunks_deleted, 0);
}

#[tokio::test]
async fn leases_expire_by_the_stores_clock_not_the_holders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let vault_dir = dir.path().join("vault");
    let mut disk = image(dir.path());
    let first = backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("1");
    churn(&mut disk, 0, 2, 4);
    backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("2");
    vault
        .store()
        .delete_point(&vm("web"), &first.point.id)
        .await
        .expect("delete");

    // A writer that crashed an hour ago on a host whose clock ran a day ahead: its record
    // claims a refresh tomorrow, the store wrote it an hour ago.
    let tomorrow = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let crashed = blockvault_core::LeaseRecord {
        id: "crashed".into(),
        kind: blockvault_core::LeaseKind::Writer,
        holder: "a backup on a host with a fast clock".into(),
        started: tomorrow,
        refreshed: tomorrow,
    };
    vault.store().put_lease(&crashed).await.expect("put");
    let file = vault_dir.join("leases/writer-crashed");
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)))
        .expect("age the lease");

    let report = gc(
        &vault,
        GcOptions {
            wait: Duration::from_secs(5),
            ..options()
        },
    )
    .await;
    assert_eq!(report.dead_leases_removed, 1, "{report:?}");
    assert_eq!(report.chunks_deleted, 2, "{report:?}");
    assert!(!file.exists());

    // A live writer's lease, however old its holder's clock says it is, holds the sweep off.
    let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let live = blockvault_core::LeaseRecord {
        id: "running".into(),
        kind: blockvault_core::LeaseKind::Writer,
        holder: "a backup on a host with a slow clock".into(),
        started: yesterday,
        refreshed: yesterday,
    };
    vault.store().put_lease(&live).await.expect("put");
    churn(&mut disk, 8, 2, 6);
    let third = backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("3");
    let second_points = vault.points(&vm("web")).await.expect("points").points;
    vault
        .store()
        .delete_point(&vm("web"), &second_points[0].id)
        .await
        .expect("delete");
    let blocked = vault
        .collect_garbage(
            GcOptions {
                wait: Duration::from_millis(300),
                ..options()
            },
            Arc::new(NoProgress),
        )
        .await;
    match blocked {
        Err(blockvault_vault::Error::GcBlocked { holders, .. }) => {
            assert!(holders[0].contains("slow clock"), "{holders:?}");
        }
        other => panic!("expected the live lease to hold the sweep off, got {other:?}"),
    }
    assert!(third.point.parent.is_some());
}

#[tokio::test]
async fn the_mark_reads_each_map_once_per_host_then_its_cached_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let vault = new_vault(dir.path()).await.with_state_dir(&state);
    let mut disk = image(dir.path());
    let first = backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("1");
    churn(&mut disk, 0, 8, 4);
    backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("2");
    churn(&mut disk, 8, 8, 6);
    backup(&vault, "web", &[&disk], block_size(BS))
        .await
        .expect("3");
    let cached = state.join("vaults").join(&vault.config().id).join("marks");
    let dry = GcOptions {
        dry_run: true,
        ..options()
    };

    let cold = gc(&vault, dry).await;
    assert_eq!((cold.maps_read, cold.maps_cached), (3, 0));
    assert_eq!(std::fs::read_dir(&cached).expect("cache").count(), 3);
    let warm = gc(&vault, dry).await;
    assert_eq!((warm.maps_read, warm.maps_cached), (0, 3), "{warm:?}");
    assert_eq!(warm.chunks_live, cold.chunks_live);

    // A damaged entry is read from the vault again.
    let entry = cached.join(&first.point.disks[0].map_digest);
    std::fs::write(&entry, b"garbage").expect("damage");
    let mended = gc(&vault, dry).await;
    assert_eq!((mended.maps_read, mended.maps_cached), (1, 2));

    // The first point goes: the collection deletes its 8 replaced blocks, from the cache, and
    // drops its entry.
    vault
        .store()
        .delete_point(&vm("web"), &first.point.id)
        .await
        .expect("delete");
    let report = gc(&vault, options()).await;
    assert_eq!((report.maps_read, report.maps_cached), (0, 2));
    assert_eq!(report.chunks_deleted, 8);
    assert!(!entry.exists(), "the deleted point's entry is dropped");
    assert_latest_restores(&vault, "web", &dir.path().join("out"), &disk.content).await;
}

/// A replicated vault's secondary can hold chunks its primary never got (the primary's upload
/// failed after the secondary's went through). The primary's listing never shows them, so
/// only a collection that lists the secondary too can free them; a live chunk the primary
/// lacks is verify's to heal, never garbage.
#[tokio::test]
async fn chunks_only_the_secondary_holds_are_collected_unless_a_point_names_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, primary, secondary) = replicated_vault(dir.path()).await;
    let disk = image(dir.path());
    backup(&vault, "app", &[&disk], block_size(BS))
        .await
        .expect("backup");

    // An orphan upload on the secondary alone, and a live chunk lost from the primary alone.
    let (orphan_id, orphan) = vault
        .store()
        .codec()
        .encode_one(b"an upload whose primary PUT failed")
        .expect("encoder");
    vault
        .store()
        .secondary()
        .expect("replicated")
        .put_chunk(&orphan_id, orphan.into())
        .await
        .expect("put on the secondary");
    let lost = chunk_files(&primary)[0].clone();
    std::fs::remove_file(&lost).expect("lose a live chunk from the primary");
    let secondary_files = || -> HashSet<String> {
        chunk_files(&secondary)
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect()
    };
    let before = secondary_files();
    assert!(before.contains(&orphan_id.to_hex().to_string()));

    let dry = gc(&vault, dry_run()).await;
    assert_eq!((dry.chunks_deleted, dry.chunks_secondary_only), (1, 1));
    assert_eq!(secondary_files(), before, "a dry run deletes nothing");

    let report = gc(&vault, options()).await;
    assert_eq!(
        (report.chunks_deleted, report.chunks_secondary_only),
        (1, 1),
        "{report:?}"
    );
    let after = secondary_files();
    assert!(!after.contains(&orphan_id.to_hex().to_string()));
    assert!(
        after.contains(
            &lost
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        ),
        "the live chunk the primary lost stays on the secondary"
    );
    assert_eq!(after.len(), before.len() - 1);

    // The point still restores: the lost chunk comes from the secondary.
    assert_latest_restores(&vault, "app", &dir.path().join("restored"), &disk.content).await;
}

/// Each sweep ships its candidates under its new epoch's name (for hosts one sweep behind)
/// and leaves only its own list: older ones serve no host.
#[tokio::test]
async fn each_sweep_ships_its_candidates_and_keeps_only_its_own_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let forgotten_dir = dir.path().join("vault/gc/forgotten");
    let (mut disk, _) = first_point_garbage(&vault, dir.path(), 4).await;
    assert_eq!(gc(&vault, options()).await.chunks_deleted, 4);
    let first = vault.store().gc_epoch().await.expect("epoch").expect("one");
    let listed = crate::support::files_in(&forgotten_dir);
    assert_eq!(listed, std::slice::from_ref(&first.id));
    let shipped = vault
        .store()
        .forgotten(&first.id)
        .await
        .expect("read")
        .expect("decodes");
    assert_eq!((shipped.previous, shipped.ids.len()), (None, 4));

    // More garbage, another sweep: its list follows the first epoch and replaces its list.
    churn(&mut disk, 8, 2, 11);
    backup(&vault, "app", &[&disk], block_size(BS))
        .await
        .expect("3");
    let points = vault.points(&vm("app")).await.expect("points").points;
    vault
        .store()
        .delete_point(&vm("app"), &points[0].id)
        .await
        .expect("delete");
    assert!(gc(&vault, options()).await.chunks_deleted > 0);
    let second = vault.store().gc_epoch().await.expect("epoch").expect("one");
    assert_eq!(
        crate::support::files_in(&forgotten_dir),
        std::slice::from_ref(&second.id)
    );
    let shipped = vault
        .store()
        .forgotten(&second.id)
        .await
        .expect("read")
        .expect("decodes");
    assert_eq!(shipped.previous, Some(first.id));
}
