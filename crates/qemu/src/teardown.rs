//! Removing what blockvault adds to a running QEMU, shared by a fleecing's teardown and the
//! cleanup after a killed one: the names it gives what it adds, exports removed and block
//! jobs cancelled, each waited for until QEMU no longer lists it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Error, Qmp, Result};

/// Prefix of the scratch nodes (and their files).
pub(crate) const SCRATCH_PREFIX: &str = "blockvault-scratch-";
/// Prefix of the scratch nodes' file nodes (their image's path survives a killed
/// blockvault: the scratch node's own filename is a `json:` description).
pub(crate) const SCRATCH_FILE_PREFIX: &str = "blockvault-file-";
/// Prefix of the private directory in the staging directory.
pub(crate) const DIR_PREFIX: &str = "blockvault-fleece-";
/// The NBD server's socket in that directory.
pub(crate) const NBD_SOCKET: &str = "nbd.sock";
/// The file in that directory saying blockvault started the VM's NBD server, and where its
/// socket is (a killed blockvault's server is stopped by the next start).
pub(crate) const NBD_MARKER: &str = "nbd-server";
/// Prefix of the short private directory in the temporary directory that holds the socket
/// when the staging directory's path is too long for one (a unix socket's path has at most
/// 107 bytes).
pub(crate) const SOCKET_DIR_PREFIX: &str = "blockvault-nbd-";
/// The longest socket path used in the staging directory.
pub(crate) const MAX_SOCKET_PATH: usize = 100;

/// Removes the exports `ids` (hard: open connections are dropped) and waits until QEMU no
/// longer lists them.
pub(crate) fn remove_exports(qmp: &mut Qmp, ids: &[String], timeout: Duration) -> Result<()> {
    let mut first = None;
    for id in ids {
        if let Err(e) = qmp.execute("block-export-del", Some(json!({"id": id, "mode": "hard"}))) {
            first.get_or_insert(e);
        }
    }
    wait_gone(qmp, "query-block-exports", "id", ids, timeout)?;
    first.map_or(Ok(()), Err)
}

/// Cancels the block jobs `ids` and waits until QEMU no longer lists them.
pub(crate) fn cancel_jobs(qmp: &mut Qmp, ids: &[String], timeout: Duration) -> Result<()> {
    let listed = listed(qmp, "query-block-jobs", "device")?;
    for id in ids.iter().filter(|id| listed.contains(id)) {
        qmp.execute(
            "block-job-cancel",
            Some(json!({"device": id, "force": true})),
        )?;
    }
    wait_gone(qmp, "query-block-jobs", "device", ids, timeout)
}

/// The `key` of every entry `query` lists.
pub(crate) fn listed(qmp: &mut Qmp, query: &str, key: &str) -> Result<Vec<String>> {
    let reply = qmp.execute(query, None)?;
    Ok(reply
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e.get(key).and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

fn wait_gone(
    qmp: &mut Qmp,
    query: &str,
    key: &str,
    ids: &[String],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<String> = listed(qmp, query, key)?
            .into_iter()
            .filter(|id| ids.contains(id))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Qmp {
                socket: qmp.path().to_owned(),
                reason: format!(
                    "{} still listed by {query} after {} ms",
                    left.join(", "),
                    timeout.as_millis()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
