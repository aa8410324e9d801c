//! `Qmp` against a real QEMU monitor (a `qemu-storage-daemon`'s): commands and their errors,
//! transactions all or nothing, and sockets that are not, or no longer, a monitor: clear
//! errors, never a hang.

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use blockvault_qemu::testing::{GuestNbd, TestVm};
use blockvault_qemu::{Action, Error, Qmp};
use serde_json::json;

const M: u64 = 1 << 20;

#[test]
fn commands_return_and_refusals_name_the_command() {
    let vm = TestVm::start(&[8 * M], GuestNbd::OnWrite);
    let mut qmp = vm.qmp();
    let version = qmp.execute("query-version", None).expect("query-version");
    assert!(version["qemu"]["major"].as_u64().is_some(), "{version}");

    let err = qmp
        .execute("no-such-command", None)
        .expect_err("unknown command");
    assert!(
        matches!(&err, Error::QmpCommand(refusal)
            if refusal.command == "no-such-command" && refusal.class == "CommandNotFound"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-command failed"), "{err}");

    let err = qmp
        .execute(
            "block-dirty-bitmap-add",
            Some(json!({"node": "nope", "name": "b"})),
        )
        .expect_err("no such node");
    assert!(err.to_string().contains("nope"), "{err}");
    // A refused command leaves the connection usable.
    qmp.execute("query-version", None).expect("still usable");
}

#[test]
fn a_transaction_is_all_or_nothing() {
    let vm = TestVm::start(&[8 * M], GuestNbd::OnWrite);
    let mut qmp = vm.qmp();
    let add = |node: &str| {
        Action::new(
            "block-dirty-bitmap-add",
            json!({"node": node, "name": "t", "persistent": false}),
        )
    };
    let err = qmp
        .transaction(&[add("disk0"), add("missing-node")])
        .expect_err("the second action fails");
    assert!(matches!(err, Error::QmpCommand(_)), "{err:?}");
    let nodes = blockvault_qemu::block_nodes(&mut qmp).expect("nodes");
    let disk = nodes.iter().find(|n| n.name == "disk0").expect("disk0");
    assert!(
        disk.bitmaps.is_empty(),
        "half a transaction applied: {disk:?}"
    );

    qmp.transaction(&[add("disk0")]).expect("one good action");
    let nodes = blockvault_qemu::block_nodes(&mut qmp).expect("nodes");
    let disk = nodes.iter().find(|n| n.name == "disk0").expect("disk0");
    assert_eq!(disk.bitmaps.len(), 1, "{disk:?}");
}

#[test]
fn a_dead_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.sock");
    let err = Qmp::connect(&missing, Duration::from_secs(5)).expect_err("no socket");
    assert!(matches!(err, Error::Qmp { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot connect"), "{err}");

    // A socket file whose listener is gone.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let err = Qmp::connect(&stale, Duration::from_secs(5)).expect_err("nobody listens");
    assert!(err.to_string().contains("stale.sock"), "{err}");
}

#[test]
fn a_socket_that_is_not_qmp_is_refused_at_once() {
    // An NBD server speaks first, in binary: not a monitor.
    let vm = TestVm::start(&[8 * M], GuestNbd::Always);
    let started = Instant::now();
    let err = Qmp::connect(&vm.guest_socket(), Duration::from_secs(20)).expect_err("NBD");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the timeout"
    );
    assert!(err.to_string().contains("not a QMP message"), "{err}");
}

#[test]
fn a_monitor_that_dies_mid_session_is_an_error_not_a_hang() {
    let mut vm = TestVm::start(&[8 * M], GuestNbd::OnWrite);
    let mut qmp = vm.qmp();
    qmp.execute("query-version", None).expect("alive");
    vm.kill();
    let started = Instant::now();
    let err = qmp.execute("query-version", None).expect_err("dead");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, Error::Qmp { .. }), "{err:?}");
    assert!(err.to_string().contains("closed"), "{err}");
    // Broken for good: the next command says so at once.
    let again = qmp.execute("query-version", None).expect_err("still dead");
    assert!(again.to_string().contains("broken"), "{again}");
}
