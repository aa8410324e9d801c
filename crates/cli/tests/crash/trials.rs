//! The campaigns: one test per vault kind, each a run of trials drawn from one seed. A trial
//! changes the disks (before a backup), runs one command under its fault, restarts the engine
//! (`jobs`), lets the dead processes' leases expire, and checks every invariant. A world (a
//! vault, a host, a VM) lives for [`WORLD_TRIALS`] trials, so the points to restore stay few;
//! it starts protected by the default policy with a full backup, and runs each command once
//! undisturbed to measure the durations that kill times are fractions of.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use crate::disks::VM;
use crate::invariants::{self, Ledger, Violation};
use crate::schedule::{self, Fault, Op, Rng, Settings, Step};
use crate::server::Server;
use crate::support::arg;
use crate::world::{Kind, Outcome, World};

/// Trials per world.
const WORLD_TRIALS: usize = 6;

#[test]
fn crash_trials_on_a_directory_vault() {
    Campaign::run(Kind::Dir, 20, "crash_trials_on_a_directory_vault");
}

#[test]
fn crash_trials_on_a_replicated_vault() {
    Campaign::run(Kind::Replicated, 20, "crash_trials_on_a_replicated_vault");
}

#[test]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
fn crash_trials_on_an_s3_vault() {
    Campaign::run(Kind::S3, 16, "crash_trials_on_an_s3_vault");
}

/// How the trials went, per command.
#[derive(Debug, Default)]
struct Figures {
    /// Per command: trials, SIGKILLs that landed, commands that finished before their fault,
    /// server faults that landed.
    per_op: BTreeMap<Op, [u32; 4]>,
    /// Backups killed: before the snapshot committed, in the transfer, after the vault commit.
    backup_phases: [u32; 3],
}

impl Figures {
    fn count(&mut self, step: &Step, outcome: &Outcome) {
        let row = self.per_op.entry(step.op).or_default();
        row[0] += 1;
        match step.fault {
            Fault::Kill { .. } if outcome.killed => row[1] += 1,
            Fault::Server { .. } if outcome.server_fault => row[3] += 1,
            Fault::Kill { .. } | Fault::Server { .. } => row[2] += 1,
            Fault::None => {}
        }
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (op, [trials, killed, finished, server]) in &self.per_op {
            writeln!(
                f,
                "  {:<24} {trials:>4} trial(s): {killed:>3} killed, {server:>3} server fault(s), \
                 {finished:>3} finished before their fault",
                op.name()
            )?;
        }
        let [snapshot, transfer, committed] = self.backup_phases;
        write!(
            f,
            "  backups killed: {snapshot} before the snapshot committed, {transfer} in the \
             transfer, {committed} after the vault commit"
        )
    }
}

struct Campaign {
    kind: Kind,
    test: &'static str,
    settings: Settings,
    steps: Vec<Step>,
    history: String,
    figures: Figures,
    started: Instant,
}

impl Campaign {
    fn run(kind: Kind, default_trials: usize, test: &'static str) {
        let settings = Settings::from_env(default_trials);
        let server_faults = kind == Kind::S3 && Server::from_env().is_some();
        // One seed for all kinds; each kind draws its own trials from it.
        let seed = settings.seed ^ (kind as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut campaign = Campaign {
            kind,
            test,
            settings,
            steps: schedule::schedule(seed, settings.trials, server_faults),
            history: String::new(),
            figures: Figures::default(),
            started: Instant::now(),
        };
        let mut world: Option<World> = None;
        let mut ledger = Ledger::default();
        let steps = campaign.steps.clone();
        for (i, step) in steps.iter().enumerate() {
            if i % WORLD_TRIALS == 0 {
                let index = i / WORLD_TRIALS;
                let fresh = World::create(kind, index).expect("a world");
                ledger = Ledger::default();
                let _ = writeln!(campaign.history, "world {index}: set up");
                let violations = campaign.set_up(world.insert(fresh), &mut ledger, seed, index);
                campaign.fail_if(i, None, &violations, None);
            }
            let world = world.as_mut().expect("a world");
            let (outcome, generation, mut violations) = campaign.trial(world, &mut ledger, step);
            campaign.figures.count(step, &outcome);
            let checking = Instant::now();
            violations.extend(invariants::check(world, &mut ledger, generation));
            let _ = writeln!(
                campaign.history,
                "trial {i}: {step}: {}; checked in {:.0?}",
                describe(&outcome),
                checking.elapsed()
            );
            if step.op.backs_up() && outcome.killed {
                let phase = match generation.and_then(|g| ledger.point_of(g)) {
                    None => 0,
                    Some(id) if ledger.tiers(id).vault => 2,
                    Some(_) => 1,
                };
                campaign.figures.backup_phases[phase] += 1;
            }
            campaign.fail_if(i, Some(step), &violations, Some((world, &outcome)));
        }
        // Shown with --nocapture: what ran, and the figures.
        eprintln!(
            "{}crash trials on {}: {} trial(s) in {:.1?}, seed {} (BLOCKVAULT_CRASH_SEED)\n{}",
            campaign.history,
            kind.vault(),
            steps.len(),
            campaign.started.elapsed(),
            campaign.settings.seed,
            campaign.figures
        );
    }

    /// A new world's first steps: protect the VM, back it up in full, then run every command
    /// once undisturbed (their durations are what kill times are fractions of).
    fn set_up(
        &mut self,
        world: &mut World,
        ledger: &mut Ledger,
        seed: u64,
        index: usize,
    ) -> Vec<Violation> {
        let vault = world.vault.clone();
        let [sys, data] = world.vm.paths().map(|p| arg(p).to_owned());
        let run = world.run(&[
            "protect", "--json", "--vault", &vault, "--vm", VM, "--disk", &sys, "--disk", &data,
        ]);
        assert_eq!(run.code, 0, "protect the VM\n{run}");
        let mut rng = Rng::new(seed ^ index as u64);
        let mut violations = Vec::new();
        let calibration = [
            Op::Backup,
            Op::Backup,
            Op::BackupTransfer,
            Op::BackupNow,
            Op::Prune,
            Op::Gc,
            Op::Verify,
        ];
        for (n, op) in calibration.into_iter().enumerate() {
            let step = Step {
                op,
                fault: Fault::None,
                churn: rng.next_u64(),
            };
            // The first backup takes generation 0 as the disks were made.
            let step_churn = n > 0;
            // Undisturbed, a backup names its point in its report: no listing needed yet.
            let (outcome, _, found) = self.trial_with(world, ledger, &step, step_churn);
            let _ = writeln!(self.history, "  set-up: {step}: {}", describe(&outcome));
            violations.extend(found);
            if !violations.is_empty() {
                return violations;
            }
        }
        invariants::check(world, ledger, None)
    }

    fn trial(
        &mut self,
        world: &mut World,
        ledger: &mut Ledger,
        step: &Step,
    ) -> (Outcome, Option<u32>, Vec<Violation>) {
        self.trial_with(world, ledger, step, true)
    }

    /// Runs one step: new disk contents before a backup, the dry run before a prune, the
    /// command under its fault, then the lease check and their expiry.
    fn trial_with(
        &mut self,
        world: &mut World,
        ledger: &mut Ledger,
        step: &Step,
        churn: bool,
    ) -> (Outcome, Option<u32>, Vec<Violation>) {
        let mut violations = Vec::new();
        let generation = step.op.backs_up().then(|| {
            if churn {
                world.vm.churn(step.churn)
            } else {
                world.vm.generation()
            }
        });
        if step.op == Op::Prune {
            let vault = world.vault.clone();
            let run = world.run(&["prune", "--json", "--dry-run", "--vault", &vault]);
            match serde_json::from_str(&run.stdout) {
                Ok(doc) if run.code == 0 => ledger.may_expire(&doc),
                _ => violations.push(Violation {
                    invariant: "an undisturbed command succeeds",
                    detail: format!("{run}"),
                }),
            }
        }
        // The dead leases of earlier kills stay (dated back) until a sweep removes them.
        let leases_before = world.leases();
        let outcome = world.run_op(step.op, step.fault);
        if outcome.hung {
            violations.push(Violation {
                invariant: "no command hangs",
                detail: format!("killed after {:?}\n{}", outcome.took, outcome.run),
            });
        }
        let ran_to_its_end = !outcome.killed && !outcome.hung;
        // Under a server fault any exit is fair (an outage may fail the transfer, exit 5, or
        // the whole command); undisturbed, or finished before its kill, a command succeeds.
        if ran_to_its_end && !outcome.server_fault && outcome.run.code != 0 {
            violations.push(Violation {
                invariant: "a command that runs to its end undisturbed succeeds",
                detail: format!("{}", outcome.run),
            });
        }
        violations.extend(ledger.record(step.op, generation, &outcome));
        if outcome.clean() {
            let mut leases = world.leases();
            leases.retain(|l| !leases_before.contains(l));
            if !leases.is_empty() {
                violations.push(Violation {
                    invariant: "a command that exits removes its leases",
                    detail: format!("{leases:?} left by\n{}", outcome.run),
                });
            }
        }
        world.expire_leases();
        (outcome, generation, violations)
    }

    /// Panics with everything needed to reproduce when an invariant failed.
    fn fail_if(
        &self,
        trial: usize,
        step: Option<&Step>,
        violations: &[Violation],
        command: Option<(&World, &Outcome)>,
    ) {
        if violations.is_empty() {
            return;
        }
        let mut report = format!(
            "crash trials on {}: {} invariant(s) failed after {}\n",
            self.kind.vault(),
            violations.len(),
            match step {
                Some(step) => format!("trial {trial} ({step})"),
                None => format!("setting up the world of trial {trial}"),
            }
        );
        for v in violations {
            let _ = writeln!(
                report,
                "- {}:\n    {}",
                v.invariant,
                v.detail.replace('\n', "\n    ")
            );
        }
        let _ = writeln!(
            report,
            "\nseed {seed}; reproduce with:\n  BLOCKVAULT_CRASH_SEED={seed} BLOCKVAULT_CRASH_TRIALS={trials} \
             cargo test -p blockvault-cli --test crash {test}\n(the same seed replays the same \
             commands, disk changes and kill fractions; kill times are fractions of the durations \
             measured on the machine)",
            seed = self.settings.seed,
            trials = self.settings.trials,
            test = self.test,
        );
        if let Some((world, outcome)) = command {
            let _ = writeln!(
                report,
                "the trial's command, in {:?}:\n{}",
                outcome.took, outcome.run
            );
            if std::env::var_os("BLOCKVAULT_CRASH_KEEP").is_some() {
                let _ = writeln!(report, "kept: {}", world.path("").display());
            }
        }
        let _ = writeln!(report, "\nwhat ran:\n{}", self.history);
        let _ = writeln!(report, "the schedule:");
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(report, "  trial {i}: {step}");
        }
        let _ = writeln!(report, "figures so far:\n{}", self.figures);
        panic!("{report}");
    }
}

/// One line on how a command ended.
fn describe(outcome: &Outcome) -> String {
    let how = if outcome.hung {
        "HUNG, killed".to_owned()
    } else if outcome.killed {
        "killed".to_owned()
    } else {
        format!("exit {}", outcome.run.code)
    };
    // What a command that ended by itself said went wrong: its error, or its warnings.
    let said = match outcome.run.code {
        0 | -1 => String::new(),
        _ => serde_json::from_str::<serde_json::Value>(&outcome.run.stdout)
            .ok()
            .map(|doc| doc["warnings"].to_string())
            .unwrap_or_else(|| outcome.run.stderr.trim().to_owned()),
    };
    format!(
        "{how} after {:.0?} (measured duration {:.0?}){}{}",
        outcome.took,
        outcome.measured.unwrap_or_default(),
        if outcome.server_fault {
            ", server restarted"
        } else {
            ""
        },
        if said.is_empty() {
            said
        } else {
            format!(": {said}")
        }
    )
}
