//! What must hold after every trial, whatever was killed and when: the ledger of what commands
//! reported and what listings showed, and the checks that hold the vault, the snapshot tier,
//! the replica and the job catalog to it.
//!
//! 1. No job is left In progress once the engine restarted (the first command after a kill is
//!    `jobs`, which opens it), and no job that ended changes its status afterwards.
//! 2. Nothing is lost: a point once listed in a tier stays listed there (a prune may take
//!    vault points its retention expires, nothing else may), so every point a command
//!    reported Completed stays too; a point appears only after a backup; points are listed
//!    in the order of the backups that made them.
//! 3. `verify --all` is clean: no bad chunk or map, and on a replicated vault nothing to repair.
//! 4. Every listed point restores byte for byte from every tier it is in, to the generation
//!    that was on the disks when its backup started, both disks from that one generation.
//! 5. Replicated vaults: the secondary, opened alone as the vault from another host, lists
//!    every vault point of the primary, keeps them, and every point it lists restores from
//!    it (a point only the secondary recorded, never committed on the primary, may go).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::disks::VM;
use crate::restores::{Restore, restore_all};
use crate::schedule::Op;
use crate::support::Run;
use crate::world::{Outcome, Plan, World};

/// An invariant that failed, and how.
#[derive(Debug)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

pub fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        invariant,
        detail: detail.into(),
    }
}

/// Tiers a point was listed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tiers {
    pub snapshot: bool,
    pub vault: bool,
}

impl Tiers {
    fn of(point: &Value) -> Tiers {
        let tiers = point["tiers"].as_array().cloned().unwrap_or_default();
        Tiers {
            snapshot: tiers.iter().any(|t| t == "snapshot"),
            vault: tiers.iter().any(|t| t == "vault"),
        }
    }
}

/// What the trials of one world have established so far.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every point ever reported or listed, with the generation its backup started from.
    generations: BTreeMap<String, u32>,
    /// The tiers each point was last listed in.
    tiers: BTreeMap<String, Tiers>,
    /// Vault points a prune expired or, killed, may have: the vault may lose these.
    expirable: BTreeSet<String>,
    /// Vault points a prune reported deleted.
    pruned: BTreeSet<String>,
    /// Jobs that ended, as their command or a listing reported them: id → status.
    jobs: BTreeMap<u64, String>,
    /// Points the secondary of a replicated vault listed.
    replica: BTreeSet<String>,
    /// Points the primary ever listed in its vault tier: committed. A point only the
    /// secondary ever recorded (a backup killed between the two stores' records, which go to
    /// the secondary first) was never committed: it may go, but not stay broken.
    committed: BTreeSet<String>,
}

impl Ledger {
    /// The generation `point` was made from, if known.
    pub fn generation(&self, point: &str) -> Option<u32> {
        self.generations.get(point).copied()
    }

    /// Whether a prune expired (or, killed, may have expired) `point`.
    pub fn expired(&self, point: &str) -> bool {
        self.expirable.contains(point)
    }

    /// The tiers `point` was last listed in (default when never listed).
    pub fn tiers(&self, point: &str) -> Tiers {
        self.tiers.get(point).copied().unwrap_or_default()
    }

    /// The point made from `generation`, if one was listed.
    pub fn point_of(&self, generation: u32) -> Option<&str> {
        self.generations
            .iter()
            .find(|(_, g)| **g == generation)
            .map(|(id, _)| id.as_str())
    }

    /// Vault points a prune about to run may expire (its dry run's list).
    pub fn may_expire(&mut self, dry_run: &Value) {
        for id in expired(dry_run) {
            self.expirable.insert(id);
        }
    }

    /// What a command that ran to its end (exit 0 or 5) reported: its point and tiers, its
    /// jobs, what it pruned. Returns what its report itself contradicts.
    pub fn record(&mut self, op: Op, generation: Option<u32>, outcome: &Outcome) -> Vec<Violation> {
        let run = &outcome.run;
        let mut found = Vec::new();
        if outcome.killed || outcome.hung || !matches!(run.code, 0 | 5) {
            return found;
        }
        let Ok(doc) = serde_json::from_str::<Value>(&run.stdout) else {
            found.push(violation(
                "a command that exits 0 prints its JSON report",
                format!("{run}"),
            ));
            return found;
        };
        match op {
            Op::Backup | Op::BackupTransfer | Op::BackupNow => {
                let job = &doc["job"];
                let status = job["status"].as_str().unwrap_or_default().to_owned();
                let expected = if run.code == 0 {
                    "completed"
                } else {
                    "completed-with-warning"
                };
                if status != expected {
                    found.push(violation(
                        "a backup's exit code says how its job ended",
                        format!("exit {} with job status {status:?}\n{run}", run.code),
                    ));
                }
                if let Some(id) = job["id"].as_u64() {
                    self.jobs.insert(id, status);
                }
                let Some(point) = doc["point"]["id"].as_str() else {
                    found.push(violation(
                        "a backup that completed reports its point",
                        format!("{run}"),
                    ));
                    return found;
                };
                let transferred = job["subtasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s["kind"] == "transfer" && s["status"] == "completed");
                if let Some(generation) = generation {
                    found.extend(self.name(point, generation));
                }
                let tiers = self.tiers.entry(point.to_owned()).or_default();
                tiers.snapshot = true;
                tiers.vault |= transferred;
            }
            Op::Prune => {
                for id in expired(&doc) {
                    self.expirable.insert(id.clone());
                    self.pruned.insert(id);
                }
            }
            Op::Verify => {
                for job in doc["jobs"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(status)) = (job["id"].as_u64(), job["status"].as_str()) {
                        self.jobs.insert(id, status.to_owned());
                    }
                }
            }
            Op::Gc => {}
        }
        found
    }

    /// Records that `point` was made from `generation`; a point named twice must be named
    /// alike.
    fn name(&mut self, point: &str, generation: u32) -> Option<Violation> {
        match self.generations.insert(point.to_owned(), generation) {
            Some(before) if before != generation => Some(violation(
                "a point belongs to one backup",
                format!("point {point} was made from generation {before}, now {generation}"),
            )),
            _ => None,
        }
    }
}

/// The ids a prune report (or its dry run) lists as expired.
fn expired(doc: &Value) -> Vec<String> {
    doc["vms"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|vm| vm["expired"].as_array().into_iter().flatten())
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect()
}

/// Checks every invariant; `generation` is the one the trial's backup started from, if it
/// ran one (the only one a new point may come from).
pub fn check(world: &mut World, ledger: &mut Ledger, generation: Option<u32>) -> Vec<Violation> {
    let mut found = Vec::new();
    jobs(world, ledger, &mut found);
    let Some(listed) = points(world, ledger, generation, &mut found) else {
        return found;
    };
    verify(world, &listed, &mut found);
    let (vault, state) = (world.vault.clone(), world.state.clone());
    let mut restores = Vec::new();
    for (id, tiers) in &listed {
        for (tier, present) in [("snapshot", tiers.snapshot), ("vault", tiers.vault)] {
            if present {
                restores.push(Restore::new(world, ledger, &vault, &state, id, tier));
            }
        }
    }
    if world.secondary.is_some() {
        restores.extend(replica(world, ledger, &listed, generation, &mut found));
    }
    found.extend(restore_all(world, &restores));
    found
}

/// Runs a listing command, or records why it failed.
fn listing(run: Run, what: &'static str, found: &mut Vec<Violation>) -> Option<Value> {
    if run.code != 0 {
        found.push(violation(what, format!("{run}")));
        return None;
    }
    match serde_json::from_str(&run.stdout) {
        Ok(doc) => Some(doc),
        Err(e) => {
            found.push(violation(what, format!("not JSON ({e})\n{run}")));
            None
        }
    }
}

/// 1. The engine restarted by `jobs`: no job In progress, and ended jobs stay as they ended.
fn jobs(world: &mut World, ledger: &mut Ledger, found: &mut Vec<Violation>) {
    let run = world.run(&["jobs", "--json", "--limit", "100000"]);
    let Some(doc) = listing(run, "`jobs` lists the jobs after a restart", found) else {
        return;
    };
    for job in doc["jobs"].as_array().into_iter().flatten() {
        let id = job["id"].as_u64().unwrap_or_default();
        let status = job["status"].as_str().unwrap_or_default();
        let running: Vec<&str> = job["subtasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["status"] == "in-progress")
            .filter_map(|s| s["kind"].as_str())
            .collect();
        if status == "in-progress" || !running.is_empty() {
            found.push(violation(
                "no job is left In progress after a restart",
                format!(
                    "job {id} ({}, status {status}, subtasks in progress: {running:?}): {job}",
                    job["operation"]
                ),
            ));
            continue;
        }
        match ledger.jobs.get(&id) {
            Some(before) if before != status => found.push(violation(
                "a job that ended keeps its status",
                format!("job {id} ended {before}, now listed {status}: {job}"),
            )),
            Some(_) => {}
            None => {
                ledger.jobs.insert(id, status.to_owned());
            }
        }
    }
}

/// 2. The points of the VM now, checked against everything seen before; returns them.
fn points(
    world: &mut World,
    ledger: &mut Ledger,
    generation: Option<u32>,
    found: &mut Vec<Violation>,
) -> Option<Vec<(String, Tiers)>> {
    let vault = world.vault.clone();
    let run = world.run(&["points", "--json", "--vault", &vault, "--vm", VM]);
    let doc = listing(run, "`points` lists the points after a restart", found)?;
    let mut listed = Vec::new();
    for point in doc["points"].as_array().into_iter().flatten() {
        let Some(id) = point["id"].as_str() else {
            continue;
        };
        let tiers = Tiers::of(point);
        if !ledger.generations.contains_key(id) {
            match generation {
                Some(g) => {
                    ledger.generations.insert(id.to_owned(), g);
                }
                None => found.push(violation(
                    "a point appears only after a backup",
                    format!("point {id} ({tiers:?}) is listed for the first time"),
                )),
            }
        }
        listed.push((id.to_owned(), tiers));
    }
    let now: BTreeMap<&str, Tiers> = listed.iter().map(|(id, t)| (id.as_str(), *t)).collect();
    for (id, before) in &ledger.tiers {
        let after = now.get(id.as_str()).copied().unwrap_or_default();
        if before.snapshot && !after.snapshot {
            found.push(violation(
                "a point stays in the snapshot tier",
                format!(
                    "point {id} (generation {:?}) is gone from the snapshot tier",
                    ledger.generations.get(id)
                ),
            ));
        }
        if before.vault && !after.vault && !ledger.expirable.contains(id) {
            found.push(violation(
                "a vault point stays unless retention expired it",
                format!(
                    "point {id} (generation {:?}) is gone from the vault; no prune expired it",
                    ledger.generations.get(id)
                ),
            ));
        }
    }
    for id in &ledger.pruned {
        if now.get(id.as_str()).is_some_and(|t| t.vault) {
            found.push(violation(
                "a point a prune reported deleted is gone from the vault",
                format!("point {id} is still listed in the vault"),
            ));
        }
    }
    // Listed oldest first: the generations must rise.
    let order: Vec<Option<u32>> = listed
        .iter()
        .map(|(id, _)| ledger.generations.get(id).copied())
        .collect();
    if order
        .windows(2)
        .any(|w| matches!((w[0], w[1]), (Some(a), Some(b)) if a >= b))
    {
        found.push(violation(
            "points are listed in the order of the backups that made them",
            format!("generations in listed order: {order:?}"),
        ));
    }
    for (id, tiers) in &listed {
        ledger.tiers.insert(id.clone(), *tiers);
        if tiers.vault {
            ledger.committed.insert(id.clone());
        }
    }
    // A point the vault lost legitimately is no longer expected there.
    for (id, tiers) in ledger.tiers.iter_mut() {
        if !now.contains_key(id.as_str()) {
            *tiers = Tiers::default();
        }
    }
    Some(listed)
}

/// 3. `verify --all`: clean, nothing repaired, every vault point verified.
fn verify(world: &mut World, listed: &[(String, Tiers)], found: &mut Vec<Violation>) {
    let vault = world.vault.clone();
    let run = world.run(&["verify", "--json", "--vault", &vault, "--all"]);
    if run.code != 0 {
        found.push(violation("`verify --all` is clean", format!("{run}")));
        return;
    }
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    let report = &doc["report"];
    let repaired = report["repaired"].as_array().map_or(0, Vec::len);
    if repaired > 0 {
        found.push(violation(
            "`verify --all` finds both copies of every object of a replicated vault",
            format!("it repaired {repaired} object(s)\n{run}"),
        ));
    }
    let in_vault = listed.iter().filter(|(_, t)| t.vault).count() as u64;
    if report["points"].as_u64() != Some(in_vault) {
        found.push(violation(
            "`verify --all` verifies every vault point",
            format!("{in_vault} point(s) listed in the vault\n{run}"),
        ));
    }
}

/// 5. The secondary of a replicated vault, opened alone from another host.
fn replica(
    world: &mut World,
    ledger: &mut Ledger,
    listed: &[(String, Tiers)],
    generation: Option<u32>,
    found: &mut Vec<Violation>,
) -> Vec<Restore> {
    let secondary = world
        .secondary
        .clone()
        .expect("a replicated world has a secondary");
    let secondary = secondary.to_str().expect("temp paths are UTF-8").to_owned();
    let state = world.path("replica-host");
    let run = world
        .exec(
            &["points", "--json", "--vault", &secondary, "--vm", VM],
            &state,
            &Plan::default(),
        )
        .run;
    let Some(doc) = listing(run, "the secondary opens alone and lists its points", found) else {
        return Vec::new();
    };
    let on_replica: BTreeSet<String> = doc["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    for (id, tiers) in listed {
        // A prune deletes a point's record from the secondary first, so one killed between
        // the two stores leaves a point it was expiring on the primary only: the next prune
        // takes it from there.
        if tiers.vault && !on_replica.contains(id) && !ledger.expirable.contains(id) {
            found.push(violation(
                "the secondary holds every vault point of the primary",
                format!(
                    "point {id} (generation {:?}) is not on the secondary",
                    ledger.generations.get(id)
                ),
            ));
        }
    }
    for id in &on_replica {
        if !ledger.generations.contains_key(id) {
            match generation {
                Some(g) => {
                    ledger.generations.insert(id.clone(), g);
                }
                None => found.push(violation(
                    "a point appears only after a backup",
                    format!("point {id} is listed on the secondary for the first time"),
                )),
            }
        }
    }
    let restores = on_replica
        .iter()
        .map(|id| Restore::new(world, ledger, &secondary, &state, id, "vault"))
        .collect();
    for id in &ledger.replica {
        if !on_replica.contains(id)
            && ledger.committed.contains(id)
            && !ledger.expirable.contains(id)
        {
            found.push(violation(
                "a point stays on the secondary unless retention expired it",
                format!(
                    "point {id} (generation {:?}) is gone from the secondary",
                    ledger.generations.get(id)
                ),
            ));
        }
    }
    ledger.replica = on_replica;
    restores
}
