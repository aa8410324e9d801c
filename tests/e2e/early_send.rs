//! The early send of a Transfer: chunks the Snapshot stores in the snapshot tier go to the vault
//! while the scan runs, and the Transfer copies only the rest and commits.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use blockvault_core::DiskName;
use blockvault_repo::Repository;
use blockvault_vault::{
    BackupReport, BackupRequest, EarlySend, NoProgress, PointSelector, TransferOptions,
    TransferReport, TransferRequest, Vault,
};

use crate::support::{Image, Write, backup, block_size, restore, vm};

const VM: &str = "early";
const BS: u64 = 64 << 10;

/// A snapshot tier and a vault (with this host's chunk index) side by side.
struct Tiers {
    dir: tempfile::TempDir,
    tier: Repository,
    vault: Vault,
    disk: Image,
}

impl Tiers {
    async fn new() -> Tiers {
        let dir = tempfile::tempdir().expect("tmp");
        let tier = Repository::init_local(dir.path().join("tier"))
            .await
            .expect("tier");
        let vault = Vault::init_local(dir.path().join("vault"))
            .await
            .expect("vault")
            .with_state_dir(dir.path().join("state"));
        let mut disk = Image::create(dir.path().join("disk.img"), 4 << 20);
        for (i, kind) in [(0u64, 1u8), (3, 2), (7, 3), (20, 4), (41, 6)] {
            disk.apply(Write {
                offset: i * BS,
                len: BS as usize,
                kind,
            });
        }
        Tiers {
            dir,
            tier,
            vault,
            disk,
        }
    }

    fn request(&self) -> BackupRequest {
        BackupRequest {
            vm: vm(VM),
            disks: vec![self.disk.path.clone().into()],
            block_size: Some(block_size(BS)),
            consistency: blockvault_core::Consistency::CrashConsistent,
            capture: None,
            options: TransferOptions::default(),
            time: None,
            retain_until: None,
            id: None,
            vault: None,
        }
    }

    fn early(&self, held: usize) -> EarlySend {
        let disks = HashSet::from([DiskName::new("disk.img").expect("name")]);
        self.vault
            .early_send_holding(&vm(VM), disks, TransferOptions::default(), held)
    }

    /// A Snapshot into the tier feeding `early`.
    async fn snapshot(&self, early: Option<&EarlySend>) -> BackupReport {
        self.tier
            .backup_teeing(&self.request(), Arc::new(NoProgress), early)
            .await
            .expect("snapshot")
    }

    /// The Transfer of `taken`, after `early`.
    async fn transfer(
        &self,
        taken: &BackupReport,
        early: EarlySend,
    ) -> blockvault_vault::Result<TransferReport> {
        let sent = early.finish().await;
        self.vault
            .transfer_early(&self.transfer_request(taken), sent)
            .await
    }

    /// The Transfer of `taken` into the vault, from the tier.
    fn transfer_request<'a>(&'a self, taken: &'a BackupReport) -> TransferRequest<'a> {
        TransferRequest {
            source: &self.tier,
            point: &taken.point,
            fresh: &taken.new_chunks,
            options: TransferOptions::default(),
            progress: Arc::new(NoProgress),
        }
    }

    /// A backup job: a Snapshot feeding an early send that holds `held` bytes, then its
    /// Transfer.
    async fn job(&self, held: usize) -> (BackupReport, TransferReport) {
        let early = self.early(held);
        let taken = self.snapshot(Some(&early)).await;
        let report = self.transfer(&taken, early).await.expect("transfer");
        (taken, report)
    }

    /// What the job's Transfer reported and what the vault holds after it.
    fn assert_sent(&self, report: &TransferReport, early: u64, stored: u64, in_vault: usize) {
        assert_eq!(report.sent_early, early, "sent early");
        assert_eq!(report.point.stats.chunks_stored, stored, "stored");
        assert_eq!(self.vault_chunks(), in_vault, "chunks in the vault");
    }

    async fn assert_no_lease(&self) {
        let leases = self.vault.store().list_leases().await.expect("leases");
        assert!(leases.is_empty(), "leases left behind: {leases:?}");
    }

    async fn assert_restores(&self, name: &str) {
        let to = self.dir.path().join(name);
        restore(&self.vault, VM, PointSelector::Latest, &to)
            .await
            .expect("restore");
        assert_eq!(
            std::fs::read(to.join("disk.img")).expect("restored"),
            self.disk.content
        );
    }

    fn vault_chunks(&self) -> usize {
        crate::support::chunk_files(&self.dir.path().join("vault")).len()
    }
}

#[tokio::test]
async fn the_snapshots_new_chunks_go_early_and_the_transfer_only_commits() {
    let mut t = Tiers::new().await;
    let (taken, report) = t.job(blockvault_vault::HELD_BYTES).await;
    assert_eq!(taken.new_chunks.len(), 5);
    t.assert_sent(&report, 5, 5, 5);
    assert_eq!(
        report.point.stats.bytes_stored,
        taken.point.stats.bytes_stored
    );
    t.assert_no_lease().await;
    t.assert_restores("full").await;

    // An incremental: two blocks change, one goes back to a block the vault has.
    for (i, kind) in [(3u64, 8u8), (30, 5)] {
        t.disk.apply(Write {
            offset: i * BS,
            len: BS as usize,
            kind,
        });
    }
    let (_, report) = t.job(blockvault_vault::HELD_BYTES).await;
    t.assert_sent(&report, 2, 2, 7);
    t.assert_no_lease().await;
    t.assert_restores("incremental").await;
}

/// The snapshot tier is new, so every chunk is new to it; the vault already holds three of the
/// five from a backup of its own: only the other two may go early.
#[tokio::test]
async fn chunks_the_vault_already_holds_are_not_sent_again() {
    let mut t = Tiers::new().await;
    // The vault's own point: the disk without blocks 20 and 41.
    let (kept, content) = (t.disk.path.clone(), t.disk.content.clone());
    for i in [20u64, 41] {
        t.disk.apply(Write {
            offset: i * BS,
            len: BS as usize,
            kind: 0,
        });
    }
    backup(&t.vault, VM, &[&t.disk], block_size(BS))
        .await
        .expect("direct backup");
    assert_eq!(t.vault_chunks(), 3);
    std::fs::write(&kept, &content).expect("put the blocks back");
    t.disk.content = content;

    let (taken, report) = t.job(blockvault_vault::HELD_BYTES).await;
    assert_eq!(taken.new_chunks.len(), 5);
    t.assert_sent(&report, 2, 2, 5);
    t.assert_restores("restored").await;
}

/// An early send keeps no set of the ids offered (a Snapshot offers each new chunk once): one
/// offered again is uploaded again, and the Transfer counts the chunk once and its bytes each
/// time they were sent.
#[tokio::test]
async fn a_chunk_offered_twice_is_counted_once() {
    let t = Tiers::new().await;
    let early = t.early(blockvault_vault::HELD_BYTES);
    let taken = t.snapshot(Some(&early)).await;
    let again = *taken.new_chunks.iter().next().expect("a new chunk");
    let encoded = t.tier.store().get_chunk(&again).await.expect("in the tier");
    early.offer(again, &encoded, None);
    let resent = encoded.len() as u64;
    let report = t.transfer(&taken, early).await.expect("transfer");
    t.assert_sent(&report, 5, 5, 5);
    assert_eq!(
        report.point.stats.bytes_stored,
        taken.point.stats.bytes_stored + resent
    );
    t.assert_restores("restored").await;
}

/// With no room to hold chunks every offer is declined: the Transfer copies them all from the
/// snapshot tier, and the result is the same.
#[tokio::test]
async fn declined_offers_are_copied_by_the_transfer() {
    let t = Tiers::new().await;
    let (_, report) = t.job(0).await;
    t.assert_sent(&report, 0, 5, 5);
    t.assert_no_lease().await;
    t.assert_restores("restored").await;
}

/// A Transfer that does not run (skipped, or blockvault stopping) abandons the early send: the
/// lease goes, and what landed serves the next transfer, which copies nothing again.
#[tokio::test]
async fn an_abandoned_early_send_leaves_no_lease_and_its_chunks_serve_the_next_transfer() {
    let t = Tiers::new().await;
    let early = t.early(blockvault_vault::HELD_BYTES);
    let taken = t.snapshot(Some(&early)).await;
    assert_eq!(early.abandon().await, None, "released without a warning");
    t.assert_no_lease().await;
    assert_eq!(t.vault_chunks(), 5);
    assert!(
        t.vault
            .store()
            .list_points(&vm(VM))
            .await
            .expect("points")
            .is_empty(),
        "an early send commits nothing"
    );

    let report = t
        .vault
        .transfer(&t.transfer_request(&taken))
        .await
        .expect("transfer");
    assert_eq!(report.sent_early, 0);
    assert_eq!(
        report.point.stats.chunks_stored, 0,
        "the chunks that went early are in the index"
    );
    t.assert_restores("restored").await;
}

/// A vault that cannot take the writer's lease: the Snapshot is not disturbed, and the
/// Transfer fails with the early send's error, leaving nothing in the vault.
#[tokio::test]
async fn a_vault_that_refuses_the_lease_fails_the_transfer_not_the_snapshot() {
    let t = Tiers::new().await;
    let leases = t.dir.path().join("vault").join("leases");
    std::fs::write(&leases, b"not a directory").expect("block the leases");
    let early = t.early(blockvault_vault::HELD_BYTES);
    let taken = t.snapshot(Some(&early)).await;
    assert_eq!(
        t.tier
            .store()
            .list_points(&vm(VM))
            .await
            .expect("points")
            .points
            .len(),
        1,
        "the snapshot committed"
    );
    let error = t.transfer(&taken, early).await.expect_err("no lease");
    assert!(error.to_string().contains("leases"), "{error}");
    assert_eq!(t.vault_chunks(), 0);
    assert!(
        t.vault
            .store()
            .list_points(&vm(VM))
            .await
            .expect("points")
            .is_empty()
    );
    assert_restorable_from_tier(&t.tier, &t.dir.path().join("from-tier"), &t.disk).await;
}

async fn assert_restorable_from_tier(tier: &Repository, to: &Path, disk: &Image) {
    let request = blockvault_vault::RestoreRequest {
        vm: vm(VM),
        point: PointSelector::Latest,
        target: to.to_owned(),
        overwrite: false,
        in_place: false,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    tier.restore(&request, Arc::new(NoProgress))
        .await
        .expect("restore from the tier");
    assert_eq!(
        std::fs::read(to.join("disk.img")).expect("restored"),
        disk.content
    );
}

/// An early send started before its vault is open (a backup job's vault opens alongside its
/// Snapshot): what the Snapshot offers meanwhile waits, and goes once the vault opens.
#[tokio::test]
async fn an_early_send_whose_vault_opens_late_sends_what_was_offered_meanwhile() {
    let t = Tiers::new().await;
    let (open, opened) = tokio::sync::oneshot::channel::<Vault>();
    let disks = HashSet::from([DiskName::new("disk.img").expect("name")]);
    let early = EarlySend::when_open(
        async move { opened.await.ok() },
        &vm(VM),
        disks,
        TransferOptions::default(),
    );
    let taken = t.snapshot(Some(&early)).await;
    assert_eq!(taken.new_chunks.len(), 5);
    assert_eq!(t.vault_chunks(), 0, "nothing can go before the vault opens");
    open.send(t.vault.clone()).expect("open the vault");
    let report = t.transfer(&taken, early).await.expect("transfer");
    t.assert_sent(&report, 5, 5, 5);
    t.assert_no_lease().await;
    t.assert_restores("late").await;
}

/// A vault that never opens: the early send ends with nothing sent and no lease taken.
#[tokio::test]
async fn an_early_send_whose_vault_never_opens_sends_nothing() {
    let t = Tiers::new().await;
    let disks = HashSet::from([DiskName::new("disk.img").expect("name")]);
    let early = EarlySend::when_open(
        std::future::ready(None::<Vault>),
        &vm(VM),
        disks,
        TransferOptions::default(),
    );
    t.snapshot(Some(&early)).await;
    assert_eq!(early.abandon().await, None, "nothing to release");
    assert_eq!(t.vault_chunks(), 0);
    t.assert_no_lease().await;
}
