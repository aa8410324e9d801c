//! The trial schedule: a seeded RNG, the settings a run takes from the environment, and what
//! each trial does and when it kills, all drawn before anything runs. The schedule depends on
//! the seed alone, never on what a trial did, so one seed gives the same trials every time
//! (only the absolute kill times follow the durations measured on the machine).

use std::fmt;

/// xorshift64*: small, fast, good enough to pick trials, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: any seed (0 too) gives a well-mixed, non-zero state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// How many trials to run and from which seed: `BLOCKVAULT_CRASH_TRIALS` (per vault kind) and
/// `BLOCKVAULT_CRASH_SEED` (decimal or 0x-hex), else the CI default and a seed from the clock.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub seed: u64,
    pub trials: usize,
}

impl Settings {
    pub fn from_env(default_trials: usize) -> Settings {
        let seed = match std::env::var("BLOCKVAULT_CRASH_SEED") {
            Ok(text) => parse_seed(&text)
                .unwrap_or_else(|| panic!("BLOCKVAULT_CRASH_SEED={text:?} is not a number")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        let trials = match std::env::var("BLOCKVAULT_CRASH_TRIALS") {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("BLOCKVAULT_CRASH_TRIALS={text:?} is not a count")),
            Err(_) => default_trials,
        };
        Settings { seed, trials }
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The command a trial runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `backup`: Snapshot, with the early send to the vault, then the Transfer.
    Backup,
    /// `backup --no-early-send`: every vault write happens in the Transfer.
    BackupTransfer,
    /// `backup-now` of the protected VM (its point is kept by `retain until`).
    BackupNow,
    /// `prune` (the Standard policy lets every vault point but a day's last expire).
    Prune,
    /// `gc --grace 0s`: every unreferenced chunk and map is garbage at once.
    Gc,
    /// `verify --all`.
    Verify,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Backup,
        Op::BackupTransfer,
        Op::BackupNow,
        Op::Prune,
        Op::Gc,
        Op::Verify,
    ];

    /// Whether the command makes a point (the disks get a new generation before it runs).
    pub fn backs_up(self) -> bool {
        matches!(self, Op::Backup | Op::BackupTransfer | Op::BackupNow)
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Backup => "backup",
            Op::BackupTransfer => "backup --no-early-send",
            Op::BackupNow => "backup-now",
            Op::Prune => "prune",
            Op::Gc => "gc",
            Op::Verify => "verify",
        }
    }

    /// How often the schedule draws it: mostly backups, whose crashes matter most.
    fn weight(self) -> u64 {
        match self {
            Op::Backup => 30,
            Op::BackupTransfer => 15,
            Op::BackupNow => 10,
            Op::Prune => 15,
            Op::Gc => 20,
            Op::Verify => 10,
        }
    }
}

/// What goes wrong during a trial's command. Times are fractions of the command's measured
/// duration (the last undisturbed run of the same command in the same world).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Nothing: the command runs to its end (its report is then a promise the next checks
    /// hold it to).
    None,
    /// SIGKILL of the blockvault process. `at` in `[0, 1)` places it in the command's whole
    /// run, or with `late` in its last phase (a backup's Transfer, as the last undisturbed
    /// backup's job timed it; the last fifth of other commands), both stretched by 5% past
    /// the measured end so that a command that finishes just first is tried too.
    Kill { at: f64, late: bool },
    /// SIGKILL of the S3 server (Garage) at `at` of the command's run, started again
    /// `pause_ms` later; the command itself runs on.
    Server { at: f64, pause_ms: u64 },
}

/// One trial: a command, what happens to it, and the seed of the disk changes before it.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub op: Op,
    pub fault: Fault,
    pub churn: u64,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op.name())?;
        match self.fault {
            Fault::None => write!(f, ", runs to its end"),
            Fault::Kill { at, late: false } => write!(f, ", SIGKILL at {at:.3} of its run"),
            Fault::Kill { at, late: true } => {
                write!(f, ", SIGKILL at {at:.3} of its last phase")
            }
            Fault::Server { at, pause_ms } => write!(
                f,
                ", S3 server SIGKILLed at {at:.3} of its run, back {pause_ms} ms later"
            ),
        }
    }
}

/// The trials of one run: `trials` steps drawn from `seed`. Server faults are drawn only when
/// `server_faults` (an S3 vault whose server the test may restart).
pub fn schedule(seed: u64, trials: usize, server_faults: bool) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let total: u64 = Op::ALL.iter().map(|op| op.weight()).sum();
    (0..trials)
        .map(|_| {
            let mut pick = rng.below(total);
            let op = Op::ALL
                .into_iter()
                .find(|op| {
                    if pick < op.weight() {
                        return true;
                    }
                    pick -= op.weight();
                    false
                })
                .unwrap_or(Op::Backup);
            // Half the kills anywhere in the run, half in its last phase, where the commits
            // are (a point record, a sweep's deletes): the narrow windows get their share.
            let late = rng.chance(0.5);
            let at = rng.unit();
            let draw = rng.unit();
            let pause_ms = 100 + rng.below(1900);
            let churn = rng.next_u64();
            let fault = if draw < 0.15 {
                Fault::None
            } else if server_faults && draw < 0.35 {
                Fault::Server { at, pause_ms }
            } else {
                Fault::Kill { at, late }
            };
            Step { op, fault, churn }
        })
        .collect()
}

#[test]
fn one_seed_gives_one_schedule_and_every_command_is_drawn() {
    let a = schedule(7, 200, true);
    let b = schedule(7, 200, true);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_ne!(format!("{a:?}"), format!("{:?}", schedule(8, 200, true)));
    for op in Op::ALL {
        assert!(a.iter().any(|s| s.op == op), "{op:?} never drawn");
    }
    assert!(a.iter().any(|s| matches!(s.fault, Fault::Server { .. })));
    assert!(
        !schedule(7, 200, false)
            .iter()
            .any(|s| matches!(s.fault, Fault::Server { .. }))
    );
}
