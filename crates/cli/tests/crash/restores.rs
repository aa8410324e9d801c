//! Invariants 4 and 5 in practice: restoring points, a few at once, and comparing the images
//! with the generation their backup started from (markers on both disks, then digests).

use std::path::{Path, PathBuf};

use crate::disks::{DISKS, VM, generation_of};
use crate::invariants::{Ledger, Violation, violation};
use crate::world::{Plan, World};

/// One restore to check: `point` from `tier` of `vault`, as the host in `state` sees it.
#[derive(Debug)]
pub struct Restore {
    vault: String,
    state: PathBuf,
    point: String,
    tier: &'static str,
    /// The generation its backup started from, if known.
    expected: Option<u32>,
    expired: bool,
    to: PathBuf,
}

impl Restore {
    pub fn new(
        world: &mut World,
        ledger: &Ledger,
        vault: &str,
        state: &Path,
        point: &str,
        tier: &'static str,
    ) -> Restore {
        Restore {
            vault: vault.to_owned(),
            state: state.to_owned(),
            point: point.to_owned(),
            tier,
            expected: ledger.generation(point),
            expired: ledger.expired(point),
            to: world.scratch("restore"),
        }
    }
}

/// Restores in flight at once: they are independent, mostly waiting on fsync.
const RESTORES_AT_ONCE: usize = 4;

/// Invariants 4 and 5: runs `restores`, a few at once, and compares each with the generation
/// its backup started from.
pub fn restore_all(world: &World, restores: &[Restore]) -> Vec<Violation> {
    let per_thread = restores.len().div_ceil(RESTORES_AT_ONCE).max(1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = restores
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .flat_map(|r| restore(world, r))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a restore thread"))
            .collect()
    })
}

fn restore(world: &World, r: &Restore) -> Vec<Violation> {
    let mut found = Vec::new();
    let args = [
        "restore",
        "--json",
        "--vault",
        &r.vault,
        "--vm",
        VM,
        "--point",
        &r.point,
        "--from",
        r.tier,
        "--to",
        r.to.to_str().expect("temp paths are UTF-8"),
    ];
    let run = world.exec(&args, &r.state, &Plan::default()).run;
    let what = format!(
        "point {} (generation {:?}{}) from the {} tier of {}",
        r.point,
        r.expected,
        if r.expired {
            ", which a prune expired"
        } else {
            ""
        },
        r.tier,
        r.vault
    );
    if run.code != 0 {
        found.push(violation(
            "every listed point restores from every tier it is in",
            format!("{what}\n{run}"),
        ));
        return found;
    }
    let mut markers = Vec::new();
    let mut digests = Vec::new();
    for (name, _) in DISKS {
        // Streamed: a few restores run at once, in three campaigns at once.
        let (marker, digest) = read_back(&r.to.join(name));
        markers.push(marker);
        digests.push(digest);
    }
    std::fs::remove_dir_all(&r.to).expect("remove the restored images");
    if markers[0] != markers[1] || markers[0].is_none() {
        found.push(violation(
            "the disks of one point come from one instant",
            format!("{what}: the disks' markers name generations {markers:?}"),
        ));
        return found;
    }
    let Some(generation) = r.expected.or(markers[0]) else {
        return found;
    };
    if markers[0] != Some(generation) {
        found.push(violation(
            "a point restores the disks as its backup found them",
            format!("{what}: the disks are generation {:?}", markers[0]),
        ));
        return found;
    }
    let Some(digests_then) = world.vm.digests(generation) else {
        found.push(violation(
            "a point restores the disks as its backup found them",
            format!("{what}: no such generation was written"),
        ));
        return found;
    };
    for (i, (name, _)) in DISKS.iter().enumerate() {
        if digests[i] != digests_then[i] {
            found.push(violation(
                "every listed point restores byte for byte",
                format!(
                    "{what}: {name} differs from generation {generation} (same marker, other bytes)"
                ),
            ));
        }
    }
    found
}

/// A restored disk's marker and digest (the digest of nothing when it is missing: it
/// matches no generation).
fn read_back(path: &Path) -> (Option<u32>, blake3::Hash) {
    use std::io::{Read, Seek, SeekFrom};
    let mut hasher = blake3::Hasher::new();
    let Ok(mut file) = std::fs::File::open(path) else {
        return (None, hasher.finalize());
    };
    let mut head = Vec::new();
    let marker = (&mut file)
        .take(64)
        .read_to_end(&mut head)
        .ok()
        .and_then(|_| generation_of(&head));
    let copied = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| std::io::copy(&mut file, &mut hasher));
    match copied {
        Ok(_) => (marker, hasher.finalize()),
        Err(_) => (None, blake3::Hasher::new().finalize()),
    }
}
