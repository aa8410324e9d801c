//! Recovery after a kill, exact (issue 21, defect 8): a job whose process is dead is Failed by
//! the very next command whatever moment the kill came, it ends when its process was last
//! seen alive (not when it was found dead), and no job's lock file outlives its job.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use blockvault_jobs::{JobStatus, Operation, SubtaskKind};

use super::fixture::*;
use crate::support::*;

/// The job lock files (`job-*`) in the host's `locks/`, sorted.
fn job_lock_files(vault: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(state_of(vault).join("locks"))
        .map(|dir| {
            dir.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("job-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Before this fix a job's row was written first and its lock taken after: a process killed in
/// between left a job In progress that the next commands left alone for 60 s (a grace for a
/// live process between the two steps), its duration running on. This is the state such a kill
/// left: the row, no `job-<id>` lock, and the old temporary lock file. The next command fails
/// the job at once. (Jobs are now created with their lock already held, so no kill can leave a
/// job without it; `a_job_in_progress_always_has_its_lock_held_from_its_first_moment` in the
/// engine proves that.)
#[test]
fn a_job_killed_between_its_row_and_its_lock_is_failed_by_the_next_command_at_once() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 1);
    backup(&vault, "rowonly", &[&disk.path], Some("64KiB"));
    let job = catalog(&vault)
        .create_job(
            &"rowonly".parse().expect("vm"),
            Operation::Backup,
            &[SubtaskKind::Snapshot, SubtaskKind::Transfer],
            jiff::Timestamp::now(),
        )
        .expect("the row of the killed job");
    let temporary = state_of(&vault).join("locks").join("job-new-4194303-0");
    fs::write(&temporary, b"").expect("the old temporary lock");

    let run = on_host(&vault, &["jobs"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr
            .contains(&format!("marked interrupted job(s) {job} as Failed")),
        "{run}"
    );
    let shown = show_job(&vault, job.0 as u64);
    assert_eq!(shown["status"], "failed", "{shown}");
    assert!(
        str_of(&shown, "/error").starts_with("interrupted"),
        "{shown}"
    );
    assert_eq!(subtask(&shown, "snapshot")["status"], "failed", "{shown}");
    assert_eq!(subtask(&shown, "transfer")["status"], "failed", "{shown}");
    // The old temporary lock is too young to be swept yet (a process of an older version may
    // be between creating and locking it); nothing else is left.
    assert_eq!(job_lock_files(&vault), ["job-new-4194303-0"]);
}

/// A backup SIGKILLed by its own pre-hook, found by a command 3 s later: the job ends when its
/// process was last known alive (its lock's heartbeat), so its duration is the backup's, not
/// the time until someone looked. Its lock file goes.
#[test]
fn a_killed_job_ends_when_its_process_died_not_when_it_was_found() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 2);
    let args = backup_args(
        &vault,
        "killed",
        &[&disk.path],
        &["--pre-hook", "kill -9 $PPID"],
    );
    let killed = blockvault(&args);
    assert_eq!(killed.code, -1, "killed by a signal\n{killed}");
    let dead = catalog_jobs(&vault).remove(0);
    assert_eq!(dead.status, JobStatus::InProgress, "{dead:?}");
    assert_eq!(job_lock_files(&vault), [format!("job-{}", dead.id)]);

    std::thread::sleep(Duration::from_secs(3));
    let found = SystemTime::now();
    let run = on_host(&vault, &["jobs"]);
    assert_eq!(run.code, 0, "{run}");
    let failed = catalog(&vault).job(dead.id).expect("job");
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    let ended = failed.ended.expect("ended");
    let took = failed.duration().expect("duration");
    assert!(
        took < Duration::from_secs(2),
        "the job ran {took:?}: it ends when it died, not when it was found"
    );
    let found = jiff::Timestamp::try_from(found).expect("time");
    assert!(
        ended < found,
        "ended {ended}, found dead at {found}: the end is the death"
    );
    for kind in [SubtaskKind::Snapshot, SubtaskKind::Transfer] {
        let task = failed.subtask(kind).expect("subtask");
        assert_eq!(task.ended, Some(ended), "{kind:?}");
    }
    assert_eq!(job_lock_files(&vault), Vec::<String>::new());
}

/// Every job removes its lock file when it ends, whichever way it ends; files left by a
/// process that died after its job had ended (an older daemon shut down mid-job left one per
/// interrupted job, forever) are swept by the next command, as are old temporary ones.
#[test]
fn lock_files_of_ended_jobs_do_not_pile_up() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 3);
    backup(&vault, "tidy", &[&disk.path], Some("64KiB"));
    restore(&vault, "tidy", &sb.path("out"), &[]);
    let failing = backup_args(&vault, "tidy", &[&disk.path], &["--pre-hook", "exit 3"]);
    assert_eq!(blockvault(&failing).code, 1, "a failed job");
    let killed = backup_args(
        &vault,
        "tidy",
        &[&disk.path],
        &["--pre-hook", "kill -9 $PPID"],
    );
    assert_eq!(blockvault(&killed).code, -1, "a killed job");
    assert_eq!(job_lock_files(&vault).len(), 1, "the killed job's lock");
    on_host(&vault, &["jobs"]);
    assert_eq!(job_lock_files(&vault), Vec::<String>::new());

    // What older versions left behind: the lock of a job that ended, and a temporary lock
    // older than any creation in progress.
    let locks = state_of(&vault).join("locks");
    let first = catalog_jobs(&vault).last().expect("the first job").id;
    fs::write(locks.join(format!("job-{first}")), b"").expect("an ended job's lock");
    let temporary = locks.join("job-new-4194303-7");
    let file = fs::File::create(&temporary).expect("a temporary lock");
    file.set_modified(SystemTime::now() - Duration::from_secs(600))
        .expect("age it");
    on_host(&vault, &["jobs"]).success();
    assert_eq!(job_lock_files(&vault), Vec::<String>::new());
    let mut left: Vec<String> = fs::read_dir(&locks)
        .expect("locks")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["tidy.snapshot", "tidy.transfer"],
        "the VM's locks stay"
    );
}
