//! One world: a vault of one kind (a directory, a replicated pair of directories, or S3), the
//! host that backs the VM up into it (its state directory: catalog, locks, snapshot tier), and
//! the VM. Commands run as the real `blockvault` binary, each a process the test may SIGKILL
//! at a chosen instant, or during which it may SIGKILL the S3 server.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

use crate::disks::{BLOCK_SIZE, VM, Vm};
use crate::schedule::{Fault, Op};
use crate::server::{S3Objects, Server};
use crate::support::{Run, arg};

/// A command still running after this long is hung: killed, and a failed trial. (gc is told
/// to give up after 10 s; an S3 request retries for at most 180 s.)
const HANG: Duration = Duration::from_secs(240);
/// How far back dead leases are dated: past the 5 minutes after which a lease is dead.
const LEASE_AGE: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A vault in a local directory.
    Dir,
    /// A replicated vault: a primary and a secondary directory.
    Replicated,
    /// A vault on the S3 server of the environment (Garage).
    S3,
}

impl Kind {
    /// "a directory vault", ...
    pub fn vault(self) -> &'static str {
        match self {
            Kind::Dir => "a directory vault",
            Kind::Replicated => "a replicated vault",
            Kind::S3 => "an S3 vault",
        }
    }
}

/// What one command did.
#[derive(Debug)]
pub struct Outcome {
    pub run: Run,
    pub took: Duration,
    /// SIGKILLed before it exited.
    pub killed: bool,
    /// Still running after [`HANG`] (then killed too).
    pub hung: bool,
    /// The S3 server was killed (and started again) while it ran.
    pub server_fault: bool,
    /// The duration its fault's times were fractions of.
    pub measured: Option<Duration>,
}

impl Outcome {
    /// It ran to its end, undisturbed.
    pub fn clean(&self) -> bool {
        !self.killed && !self.hung && !self.server_fault
    }
}

#[derive(Debug)]
pub struct World {
    dir: PathBuf,
    /// Removes `dir` when the world is dropped, unless `BLOCKVAULT_CRASH_KEEP` is set.
    _cleanup: Option<TempDir>,
    /// The vault's location as commands take it.
    pub vault: String,
    /// The replicated vault's secondary directory.
    pub secondary: Option<PathBuf>,
    /// The host's state directory.
    pub state: PathBuf,
    pub vm: Vm,
    /// The last undisturbed run of each command: what kill times are fractions of.
    timings: BTreeMap<Op, Timing>,
    server: Option<Server>,
    s3: Option<S3Objects>,
    commands: u64,
    /// Numbers the output files of commands.
    outputs: AtomicU64,
}

impl World {
    /// A fresh world (vault initialised, nothing backed up), or None for S3 without a server.
    pub fn create(kind: Kind, index: usize) -> Option<World> {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_owned();
        let cleanup = match std::env::var_os("BLOCKVAULT_CRASH_KEEP") {
            Some(_) => {
                let _kept = temp.keep();
                None
            }
            None => Some(temp),
        };
        let (vault, secondary, s3) = match kind {
            Kind::Dir => (arg(&dir.join("vault")).to_owned(), None, None),
            Kind::Replicated => (
                arg(&dir.join("vault")).to_owned(),
                Some(dir.join("replica")),
                None,
            ),
            Kind::S3 => {
                let location = crate::server::s3_location(&format!("world{index}"))?;
                let objects = S3Objects::open(&location);
                (location, None, Some(objects))
            }
        };
        let world = World {
            state: dir.join("host-state"),
            vm: Vm::create(&dir),
            dir,
            _cleanup: cleanup,
            vault,
            secondary,
            timings: BTreeMap::new(),
            server: (kind == Kind::S3).then(Server::from_env).flatten(),
            s3,
            commands: 0,
            outputs: AtomicU64::new(0),
        };
        let mut init = vec!["vault", "init", "--vault", &world.vault];
        if let Some(secondary) = &world.secondary {
            init.extend(["--redundancy", "replicated", "--secondary", arg(secondary)]);
        }
        let run = world.exec(&init, &world.state, &Plan::default()).run;
        assert_eq!(run.code, 0, "vault init\n{run}");
        Some(world)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The arguments of `op` in this world.
    pub fn args(&self, op: Op) -> Vec<String> {
        let vault = self.vault.as_str();
        let mut args: Vec<&str> = match op {
            Op::Backup | Op::BackupTransfer => {
                vec!["backup", "--json", "--vault", vault, "--vm", VM]
            }
            Op::BackupNow => vec!["backup-now", "--json", "--vm", VM],
            Op::Prune => vec!["prune", "--json", "--vault", vault],
            Op::Gc => vec![
                "gc", "--json", "--vault", vault, "--grace", "0s", "--wait", "10s",
            ],
            Op::Verify => vec!["verify", "--json", "--vault", vault, "--all"],
        };
        if matches!(op, Op::Backup | Op::BackupTransfer) {
            for disk in self.vm.paths() {
                args.extend(["--disk", arg(disk)]);
            }
            args.extend(["--block-size", BLOCK_SIZE]);
        }
        if op == Op::BackupTransfer {
            args.push("--no-early-send");
        }
        args.into_iter().map(str::to_owned).collect()
    }

    /// Runs `op` under `fault` (kill times as fractions of its last undisturbed run), and
    /// remembers how long it took when nothing disturbed it.
    pub fn run_op(&mut self, op: Op, fault: Fault) -> Outcome {
        let args = self.args(op);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let timing = self.timings.get(&op).copied();
        let plan = self.plan(op, fault, timing);
        let spawned = jiff::Timestamp::now();
        let mut outcome = self.exec(&args, &self.state.clone(), &plan);
        outcome.measured = timing.map(|t| t.duration);
        if outcome.clean() && outcome.run.code == 0 {
            let last_phase = match op.backs_up() {
                true => snapshot_end(&outcome, spawned),
                false => None,
            };
            self.timings.insert(
                op,
                Timing {
                    duration: outcome.took,
                    last_phase: last_phase.unwrap_or(0.8),
                },
            );
        }
        outcome
    }

    /// When `fault` strikes `op`, from its last undisturbed run (at once without one). A late
    /// kill of a backup waits for its snapshot's commit (its record appearing in the snapshot
    /// tier) and then for a fraction of what the Transfer took last time: how long the
    /// Snapshot takes varies with the machine's load far more than a fraction of the whole
    /// run could follow.
    fn plan(&self, op: Op, fault: Fault, timing: Option<Timing>) -> Plan {
        let Timing {
            duration,
            last_phase,
        } = timing.unwrap_or(Timing {
            duration: Duration::ZERO,
            last_phase: 0.8,
        });
        let kill = |when| Plan {
            kill: Some(when),
            server: None,
        };
        match fault {
            Fault::None => Plan::default(),
            Fault::Kill { at, late: false } => kill(Kill::After(duration.mul_f64(at * 1.05))),
            Fault::Kill { at, late: true } if op.backs_up() => kill(Kill::AfterSnapshot {
                points: self
                    .state
                    .join("snapshots")
                    .join(VM)
                    .join("points")
                    .join(VM),
                delay: duration.mul_f64((1.0 - last_phase) * at * 1.05),
            }),
            Fault::Kill { at, late: true } => kill(Kill::After(duration.mul_f64(0.8 + at * 0.25))),
            Fault::Server { at, pause_ms } => Plan {
                kill: None,
                server: Some((duration.mul_f64(at * 1.05), Duration::from_millis(pause_ms))),
            },
        }
    }

    /// Runs `blockvault ARGS` with `state` as the host's state directory (another than the
    /// world's for a second host), under `plan`.
    pub fn exec(&self, args: &[&str], state: &Path, plan: &Plan) -> Outcome {
        // Restores run a few at once: each run has its own output files.
        let n = self.outputs.fetch_add(1, Ordering::Relaxed);
        let out = self.dir.join(format!("out-{n}"));
        let (stdout, stderr) = (out.with_extension("stdout"), out.with_extension("stderr"));
        let server_at = plan.server;
        let snapshots_before = match &plan.kill {
            Some(Kill::AfterSnapshot { points, .. }) => committed(points),
            _ => 0,
        };
        let mut snapshot_seen: Option<Instant> = None;
        let mut command = Command::new(env!("CARGO_BIN_EXE_blockvault"));
        command
            .args(args)
            .env("TZ", "UTC")
            .env("BLOCKVAULT_STATE_DIR", state)
            .env_remove("BLOCKVAULT_VAULT")
            .env_remove("BLOCKVAULT_SNAPSHOT_DIR")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"));
        let started = Instant::now();
        let mut child = command.spawn().expect("start blockvault");
        let (mut killed, mut hung) = (false, false);
        let mut server_down: Option<Instant> = None;
        let mut server_fault = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll blockvault") {
                break status;
            }
            let now = started.elapsed();
            let due = match &plan.kill {
                None => false,
                Some(Kill::After(t)) => now >= *t,
                Some(Kill::AfterSnapshot { points, delay }) => {
                    if snapshot_seen.is_none() && committed(points) > snapshots_before {
                        snapshot_seen = Some(Instant::now());
                    }
                    snapshot_seen.is_some_and(|seen| seen.elapsed() >= *delay)
                }
            };
            if due && !killed {
                child.kill().expect("SIGKILL blockvault");
                killed = true;
            }
            if let Some((t, _)) = server_at
                && now >= t
                && !server_fault
            {
                self.server().kill();
                server_fault = true;
                server_down = Some(Instant::now());
            }
            if let (Some(down), Some((_, pause))) = (server_down, server_at)
                && down.elapsed() >= pause
            {
                self.server().start();
                server_down = None;
            }
            if now >= HANG && !hung {
                child.kill().expect("SIGKILL a hung blockvault");
                hung = true;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let took = started.elapsed();
        // The server comes back after its pause even when the command ended first.
        if let (Some(down), Some((_, pause))) = (server_down, server_at) {
            std::thread::sleep(pause.saturating_sub(down.elapsed()));
            self.server().start();
        }
        if server_fault && let Some(s3) = &self.s3 {
            s3.wait_ready();
        }
        let read = |path: &Path| {
            let text = String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
            let _ = fs::remove_file(path);
            text
        };
        Outcome {
            run: Run {
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                code: status.code().unwrap_or(-1),
                stdout: read(&stdout),
                stderr: read(&stderr),
            },
            took,
            killed: killed && !status.success() && status.code().is_none(),
            hung,
            server_fault,
            measured: None,
        }
    }

    fn server(&self) -> &Server {
        self.server
            .as_ref()
            .expect("server faults are drawn only with a server to restart")
    }

    /// A command run undisturbed, on this world's host; counted for fresh restore targets.
    pub fn run(&mut self, args: &[&str]) -> Run {
        self.commands += 1;
        self.exec(args, &self.state.clone(), &Plan::default()).run
    }

    /// A directory no restore used yet.
    pub fn scratch(&mut self, name: &str) -> PathBuf {
        self.commands += 1;
        self.path(&format!("{name}-{}", self.commands))
    }

    /// The leases in the vault (on the primary: leases live there only).
    pub fn leases(&self) -> Vec<String> {
        match &self.s3 {
            Some(s3) => s3.leases().expect("list the vault's leases"),
            None => lease_files(Path::new(&self.vault))
                .into_iter()
                .map(|p| p.display().to_string())
                .collect(),
        }
    }

    /// Lets the leases of killed processes expire, as five minutes would: a directory vault's
    /// are dated 10 minutes back (the writers and collectors that list them judge them dead by
    /// that date, as they would), an S3 vault's are removed (their dates are the server's).
    /// Call only when no blockvault process runs.
    pub fn expire_leases(&self) {
        match &self.s3 {
            Some(s3) => s3.remove_leases(),
            None => {
                let then = SystemTime::now() - LEASE_AGE;
                for path in lease_files(Path::new(&self.vault)) {
                    // A lease can vanish between the listing and this; nothing to age then.
                    if let Ok(file) = File::options().write(true).open(&path) {
                        file.set_modified(then).expect("date a dead lease back");
                    }
                }
            }
        }
    }
}

/// What happens to a command while it runs.
#[derive(Debug, Default)]
pub struct Plan {
    kill: Option<Kill>,
    /// When the S3 server is killed, and how long it stays down.
    server: Option<(Duration, Duration)>,
}

/// When the command is SIGKILLed.
#[derive(Debug)]
enum Kill {
    /// This long after it started.
    After(Duration),
    /// This long after a new point record appears in `points` (a snapshot tier's records).
    AfterSnapshot { points: PathBuf, delay: Duration },
}

/// Point records in a vault-format `points/<vm>` directory (not staging files).
fn committed(points: &Path) -> usize {
    fs::read_dir(points).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().contains('#'))
            .count()
    })
}

/// A command's last undisturbed run, which kill times are fractions of.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub duration: Duration,
    /// Where its last phase starts, as a fraction of `duration`: the end of a backup's
    /// Snapshot.
    pub last_phase: f64,
}

/// When a backup's Snapshot ended (its Transfer, started with the early send, goes on alone
/// from there to the commit), as a fraction of the run of the process spawned at `spawned`
/// (from its job's report).
fn snapshot_end(outcome: &Outcome, spawned: jiff::Timestamp) -> Option<f64> {
    let doc: serde_json::Value = serde_json::from_str(&outcome.run.stdout).ok()?;
    let started: jiff::Timestamp = doc["job"]["subtasks"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == "snapshot")?["ended"]
        .as_str()?
        .parse()
        .ok()?;
    let offset = started.duration_since(spawned).as_secs_f64();
    let fraction = offset / outcome.took.as_secs_f64();
    (0.0..1.0).contains(&fraction).then_some(fraction)
}

/// The lease files of a directory vault.
fn lease_files(vault: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(vault.join("leases")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect()
}
