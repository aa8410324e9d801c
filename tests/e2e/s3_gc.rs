//! Garbage collection on a real S3 server (the Garage of `scripts/test.sh`, which ignores
//! conditional writes): the lease protocol alone keeps a backup that reuses the chunks of a
//! point deleted meanwhile safe, and the collection deletes exactly what no point names. The
//! same scenario on a local directory is in `gc.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use blockvault_core::ChunkId;
use blockvault_vault::{BackupRequest, GcOptions, NoProgress, PointSelector, Progress, Vault};
use futures::TryStreamExt;

use crate::s3::{SERVER, s3};
use crate::support::{Image, Write, backup, block_size, restore, vm};

const BS: u64 = 64 << 10;

/// Sleeps in the first `advance` of a backup's scan, so the backup is still running (holding
/// its writer lease, its parent's maps read) while the collection marks and waits.
struct Slow {
    slept: AtomicU64,
    scanning: Arc<AtomicBool>,
}

impl Progress for Slow {
    fn begin(&self, _phase: &str, _total: u64) {
        self.scanning.store(true, Ordering::SeqCst);
    }
    fn advance(&self, _bytes: u64) {
        if self.slept.fetch_add(1, Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
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
async fn gc_on_garage_waits_for_a_backup_reusing_a_deleted_points_chunks() {
    let Some(s3) = s3() else { return };
    let _server = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::init(s3.store("gc")).await.expect("init");
    let mut disk = Image::create(dir.path().join("disk.img"), 64 * BS);
    disk.apply(Write {
        offset: 0,
        len: (64 * BS) as usize,
        kind: 2,
    });
    let first = backup(&vault, "db", &[&disk], block_size(BS))
        .await
        .expect("first backup");
    assert_eq!(chunks_in(&vault).await.len(), 64, "64 distinct blocks");
    disk.apply(Write {
        offset: 0,
        len: (4 * BS) as usize,
        kind: 8,
    });

    // The next backup starts: it takes the first point's chunks as present (from its maps)
    // and will name them without uploading them.
    let scanning = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let (vault, scanning) = (vault.clone(), Arc::clone(&scanning));
        let request = BackupRequest {
            vm: vm("db"),
            disks: vec![disk.path.clone()],
            block_size: Some(block_size(BS)),
            consistency: blockvault_core::Consistency::CrashConsistent,
            options: Default::default(),
            time: None,
            retain_until: None,
        };
        async move {
            let slow = Slow {
                slept: AtomicU64::new(0),
                scanning,
            };
            vault.backup(&request, Arc::new(slow)).await
        }
    });
    while !scanning.load(Ordering::SeqCst) {
        assert!(!running.is_finished(), "the backup ended before its scan");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile the first point is deleted (retention): at the mark no point names a chunk.
    vault
        .store()
        .delete_point(&vm("db"), &first.point.id)
        .await
        .expect("delete the first point");
    let options = GcOptions {
        grace: Duration::ZERO,
        wait: Duration::from_secs(120),
        poll: Duration::from_millis(50),
        dry_run: false,
        concurrency: 4,
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
    assert!(
        vault
            .store()
            .list_leases()
            .await
            .expect("leases")
            .is_empty(),
        "no lease is left behind"
    );

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
        .ids()
        .iter()
        .copied()
        .filter(|id| !id.is_zero())
        .collect();
    assert_eq!(named.len(), 64);
    assert_eq!(
        chunks_in(&vault).await,
        named,
        "exactly the unreferenced chunks went"
    );

    // The point committed during the collection restores byte for byte, from a fresh handle.
    let reopened = Vault::open(vault.store().clone()).await.expect("open");
    let out = dir.path().join("out");
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
