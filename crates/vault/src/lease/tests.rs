//! Tests of the lease protocol.

use blockvault_store::testing::ProbedStore;

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockvault_core::{LeaseKind, LeaseRecord};
use blockvault_store::Store;
use jiff::Timestamp;

use tokio::sync::Mutex;
use tokio::time::Instant as LeaseClock;

use super::listed::is_live;
use super::writer::{REFRESH_EVERY, State};
use super::*;
use crate::Error;

const POLL: Duration = Duration::from_millis(20);

/// A lease whose writer is dropped while the put is in flight (an interrupted `gc` taking
/// its hold on new backups) is removed once the put lands, and the process waiting for
/// dropped leases sees it removed. Before, the put landed after the drop and stayed.
#[tokio::test]
async fn a_lease_dropped_while_it_is_written_is_removed_once_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::local(dir.path()).expect("store");
    let mut write = Box::pin(Lease::write(&store, LeaseKind::SweepPending, "gc"));
    assert!(
        futures::poll!(&mut write).is_pending(),
        "the put is in flight"
    );
    drop(write);
    assert!(Lease::dropped_removed(Duration::from_secs(10)).await);
    // Whatever a put still in flight would do, it has had the time to.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let leases = store.list_leases().await.expect("list");
    assert!(leases.is_empty(), "{leases:?}");
}

/// Waits `wait`, never holding writers back.
fn patience(wait: Duration) -> SweepWait {
    SweepWait {
        wait,
        poll: POLL,
        hold_after: wait,
        hold_for: Duration::ZERO,
    }
}

/// Records what a sweep says it waits for.
#[derive(Default)]
struct Waits(std::sync::Mutex<Vec<(String, Timestamp, Timestamp)>>);

impl crate::Progress for Waits {
    fn waiting(&self, holders: &str, expires: Timestamp, gives_up: Timestamp) {
        self.0
            .lock()
            .expect("waits")
            .push((holders.to_owned(), expires, gives_up));
    }
}

/// A sweep held off by a writer (a backup that may have died) says who it waits for, when that
/// writer's lease runs out, and when it gives up, instead of standing still without a word.
#[tokio::test]
async fn a_waiting_sweep_says_whom_it_waits_for_and_until_when() {
    let store = Store::in_memory();
    let (writer, _) = Lease::writer(&store, "backup of a").await.expect("writer");
    let before = Timestamp::now();
    let waits = Waits::default();
    let wait = Duration::from_millis(200);
    let blocked = Lease::sweeper_with(&store, "gc", patience(wait), &waits).await;
    assert!(
        matches!(blocked, Err(Error::GcBlocked { .. })),
        "{blocked:?}"
    );
    let waits = waits.0.into_inner().expect("waits");
    assert!(!waits.is_empty(), "the wait was reported");
    for (holders, expires, gives_up) in &waits {
        assert_eq!(holders, &writer.record().holder);
        // The writer's lease, just written, runs out a lease time from now.
        let ttl = jiff::SignedDuration::try_from(LEASE_TTL).expect("ttl");
        let slack = jiff::SignedDuration::from_secs(5);
        assert!(
            expires
                .duration_since(before.checked_add(ttl).expect("t"))
                .abs()
                <= slack,
            "{expires} vs {before} + {LEASE_TTL:?}"
        );
        assert!(
            *gives_up >= before && *gives_up <= Timestamp::now().checked_add(slack).expect("t"),
            "gives up within the wait: {gives_up}"
        );
    }
}

#[tokio::test]
async fn a_writer_yields_to_a_sweep_and_a_sweep_waits_for_writers() {
    let store = Store::in_memory();
    let (writer, waited) = Lease::writer(&store, "backup of a").await.expect("writer");
    assert!(waited < Duration::from_secs(1), "no sweep: no wait");

    // While a writer runs, the sweep waits (holding no lease) and gives up in time.
    let blocked = Lease::sweeper(&store, "gc", patience(Duration::from_millis(200))).await;
    match blocked {
        Err(Error::GcBlocked { holders, .. }) => {
            assert_eq!(holders, vec![writer.record().holder.clone()]);
        }
        other => panic!("expected GcBlocked, got {other:?}"),
    }
    let listed = store.list_leases().await.expect("list");
    assert_eq!(listed.len(), 1, "the waiting sweep holds no lease");

    // A sweep whose lease is written while a writer runs sees it and lets it finish.
    let sweeper = Lease::write(&store, LeaseKind::Sweeper, "gc")
        .await
        .expect("sweeper");
    let blockers = sweeper.blockers().await.expect("blockers");
    assert_eq!(blockers.len(), 1, "the running writer blocks the sweep");
    assert_eq!(blockers[0].id, writer.record().id);

    // A writer arriving during the sweep waits for it.
    let late = tokio::spawn({
        let store = store.clone();
        async move { Lease::writer(&store, "backup of b").await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!late.is_finished(), "the late writer waits for the sweep");
    writer.release().await.expect("release");
    assert!(sweeper.blockers().await.expect("blockers").is_empty());
    sweeper.release().await.expect("release");
    let (late, waited) = late.await.expect("join").expect("writer");
    assert!(
        waited >= Duration::from_millis(500),
        "it waited: {waited:?}"
    );
    late.check().await.expect("fresh lease");
    late.release().await.expect("release");
    assert!(store.list_leases().await.expect("list").is_empty());
}

/// Whether the vault lists a live lease of `kind`.
async fn listed(store: &Store, kind: LeaseKind) -> bool {
    let leases = store.list_leases().await.expect("list");
    leases
        .iter()
        .any(|l| l.record.as_ref().is_some_and(|r| r.kind == kind))
}

/// Polls until the vault does (`true`) or does not (`false`) list a lease of `kind`.
async fn until_listed(store: &Store, kind: LeaseKind, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(store, kind).await != present {
        assert!(
            Instant::now() < deadline,
            "{kind:?} listed: {present} never came"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn a_sweep_that_finds_no_pause_holds_new_writers_back_until_it_has_run() {
    let store = Store::in_memory();
    let (running, _) = Lease::writer(&store, "backup of a").await.expect("writer");
    let sweep = tokio::spawn({
        let store = store.clone();
        let patience = SweepWait {
            wait: Duration::from_secs(30),
            poll: POLL,
            hold_after: Duration::from_millis(100),
            hold_for: Duration::from_secs(30),
        };
        async move { Lease::sweeper(&store, "gc", patience).await }
    });
    until_listed(&store, LeaseKind::SweepPending, true).await;

    // A writer that starts now waits; the running one goes on and may commit.
    let late = tokio::spawn({
        let store = store.clone();
        async move { Lease::writer(&store, "backup of b").await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!late.is_finished(), "the new writer is held back");
    assert!(
        !sweep.is_finished(),
        "the sweep waits for the running writer"
    );
    let leases = store.list_leases().await.expect("list");
    assert!(
        leases
            .iter()
            .any(|l| l.record.as_ref() == Some(running.record())),
        "the running writer's lease stays"
    );
    running.check().await.expect("and it may commit");
    running.release().await.expect("release");

    // The running writer done, the sweep runs before the held writer.
    let Sweeper {
        lease: sweeper,
        waited,
        held,
        ..
    } = sweep.await.expect("join").expect("the sweep gets its turn");
    assert!(
        held >= Duration::from_millis(700) && held < waited,
        "held {held:?} of {waited:?}"
    );
    assert!(
        !listed(&store, LeaseKind::SweepPending).await,
        "the hold ends once the sweep holds its own lease"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!late.is_finished(), "the held writer waits for the sweep");
    sweeper.release().await.expect("release");
    let (late, waited) = late.await.expect("join").expect("writer");
    assert!(waited >= Duration::from_secs(1), "it waited: {waited:?}");
    late.release().await.expect("release");
    assert!(store.list_leases().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_sweep_holds_writers_back_for_hold_for_at_most_and_never_after_giving_up() {
    let store = Store::in_memory();
    let (running, _) = Lease::writer(&store, "backup of a").await.expect("writer");
    let sweep = |hold_for| {
        let store = store.clone();
        let patience = SweepWait {
            wait: Duration::from_secs(2),
            poll: POLL,
            hold_after: Duration::from_millis(50),
            hold_for,
        };
        tokio::spawn(async move { Lease::sweeper(&store, "gc", patience).await })
    };

    // The hold ends after `hold_for`, well before the sweep gives up.
    let short = sweep(Duration::from_millis(300));
    until_listed(&store, LeaseKind::SweepPending, true).await;
    until_listed(&store, LeaseKind::SweepPending, false).await;
    assert!(!short.is_finished(), "the sweep still waits");
    let (other, waited) = Lease::writer(&store, "backup of b").await.expect("writer");
    assert!(
        waited < Duration::from_millis(500),
        "new writers get in again: {waited:?}"
    );
    other.release().await.expect("release");
    assert!(matches!(
        short.await.expect("join"),
        Err(Error::GcBlocked { .. })
    ));

    // Giving up while holding, the sweep lets writers in again.
    let long = sweep(Duration::from_secs(60));
    until_listed(&store, LeaseKind::SweepPending, true).await;
    match long.await.expect("join") {
        Err(Error::GcBlocked { holders, .. }) => {
            assert_eq!(holders, vec![running.record().holder.clone()]);
        }
        other => panic!("expected GcBlocked, got {other:?}"),
    }
    assert!(!listed(&store, LeaseKind::SweepPending).await);
    running.release().await.expect("release");
    assert!(store.list_leases().await.expect("list").is_empty());
}

/// Writers held back by a pending sweep must not look like running writers to it: they
/// wait without a lease, or a dozen of them would keep the sweep from ever starting.
#[tokio::test]
async fn held_writers_wait_without_writing_leases() {
    let counting = Arc::new(ProbedStore::counting("leases/writer-"));
    let store = Store::new(counting.clone(), "counting");
    let writes = || counting.puts();
    let hold = Lease::write(&store, LeaseKind::SweepPending, "gc")
        .await
        .expect("hold");
    let held: Vec<_> = (0..10)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { Lease::writer(&store, &format!("backup {n}")).await })
        })
        .collect();
    // Three rounds of retries.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(held.iter().all(|w| !w.is_finished()), "all are held back");
    assert_eq!(writes(), 10, "one attempt each, then no lease while held");
    assert!(
        !listed(&store, LeaseKind::Writer).await,
        "no writer lease listed while they wait"
    );

    hold.release().await.expect("release");
    for writer in held {
        let (lease, _) = writer.await.expect("join").expect("writer");
        lease.release().await.expect("release");
    }
    assert_eq!(writes(), 20, "one more each once the hold is gone");
}

/// A holder stopped (SIGSTOP, a suspended VM) for longer than the lease time: a sweep may
/// have judged it dead and run meanwhile. When it resumes, its refresher fires at once and
/// rewrites the lease, but the lease must stay lost: committing now could name chunks the
/// sweep deleted.
#[tokio::test(start_paused = true)]
async fn a_lease_that_lapsed_stays_lost_after_the_refresher_rewrites_it() {
    let store = Store::in_memory();
    let (lease, _) = Lease::writer(&store, "backup of a").await.expect("writer");
    // Refreshed on time, it holds for as long as the writer runs.
    tokio::time::sleep(LEASE_TTL * 2).await;
    lease.check().await.expect("refreshed every 20 s");

    // The process is stopped past the lease time; on resume every timer is overdue.
    tokio::time::advance(LEASE_TTL + Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let since = lease.state.lock().await.last_written.elapsed();
    assert!(
        since < REFRESH_EVERY,
        "the refresher rewrote the lease on resume"
    );
    match lease.check().await {
        Err(Error::LeaseLost { since, .. }) => {
            assert!(since > LEASE_TTL, "the gap is reported: {since:?}");
        }
        other => panic!("a lease that lapsed must stay lost, got {other:?}"),
    }
    lease.release().await.expect("release");
}

#[tokio::test]
async fn two_sweepers_never_both_go_and_dead_leases_are_ignored_and_removed() {
    let store = Store::in_memory();
    let first = Lease::sweeper(&store, "gc 1", patience(POLL))
        .await
        .expect("first")
        .lease;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = Lease::write(&store, LeaseKind::Sweeper, "gc 2")
        .await
        .expect("second");
    // The first one goes on (it listed before the second wrote); the second sees it.
    assert_eq!(second.blockers().await.expect("blockers").len(), 1);
    first.release().await.expect("release");
    second.release().await.expect("release");

    // Two collectors race: B writes and lists first and sees nobody, so B sweeps. A's
    // lease says it started earlier (its clock is behind, or its write was slow) but
    // lands after B listed: A must still see B and withdraw.
    let b = Lease::write(&store, LeaseKind::Sweeper, "gc b")
        .await
        .expect("b");
    assert!(b.blockers().await.expect("blockers").is_empty(), "b sweeps");
    let earlier = Timestamp::now() - jiff::SignedDuration::from_secs(10);
    let a_record = LeaseRecord {
        id: "a".into(),
        kind: LeaseKind::Sweeper,
        holder: "gc a".into(),
        started: earlier,
        refreshed: earlier,
    };
    store.put_lease(&a_record).await.expect("put a");
    let a = Lease {
        store: store.clone(),
        record: a_record,
        state: Arc::new(Mutex::new(State {
            last_written: LeaseClock::now(),
            lapsed: None,
            released: false,
        })),
        refresher: None,
        dead_removed: std::sync::atomic::AtomicU64::new(0),
    };
    let blockers = a.blockers().await.expect("blockers");
    assert_eq!(
        blockers.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![b.record().id.clone()],
        "a sweeps only if b does not: two sweeps at once"
    );
    a.release().await.expect("release");
    b.release().await.expect("release");

    // A writer that died an hour ago.
    let old = Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let dead = LeaseRecord {
        id: "dead".into(),
        kind: LeaseKind::Writer,
        holder: "a killed backup".into(),
        started: old,
        refreshed: old,
    };
    store.put_lease(&dead).await.expect("put");
    let listed = store.list_leases().await.expect("list");
    // The in-memory store stamps the write with now: judge it at a later "now".
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(400);
    assert!(!is_live(&listed[0], later), "dead after the lease time");
    assert!(
        is_live(&listed[0], Timestamp::now()),
        "alive by the store's clock"
    );
}
