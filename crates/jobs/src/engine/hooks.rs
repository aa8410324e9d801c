//! Pre- and post-snapshot hook commands: what makes a snapshot application-consistent.
//!
//! The pre-snapshot hook runs before the first disk is read (for example `fsfreeze --freeze`
//! through the guest agent, or `virsh suspend`), the post-snapshot hook after the last one is
//! read, whether or not the read succeeded, so a frozen VM is always thawed. Each runs as
//! `sh -c COMMAND` with `BLOCKVAULT_VM`, `BLOCKVAULT_HOOK` (`pre` or `post`) and
//! `BLOCKVAULT_DISKS` (the absolute disk paths, one per line) in its environment, and must exit 0
//! within the timeout.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use blockvault_core::VmName;
use tokio::io::AsyncReadExt;

/// The hook commands of a VM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub pre: Option<String>,
    pub post: Option<String>,
    /// How long each hook may run (default 5 minutes).
    pub timeout: Option<Duration>,
}

impl Hooks {
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// Whether a successful run makes the point application-consistent.
    pub fn quiesce(&self) -> bool {
        self.pre.is_some()
    }
}

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    Pre,
    Post,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Pre => "pre",
            Hook::Post => "post",
        }
    }
}

/// `sh -c COMMAND` with the hook's environment (`BLOCKVAULT_VM`, `BLOCKVAULT_HOOK`, and
/// `BLOCKVAULT_DISKS`: absolute paths, one per line), stdin and stdout closed.
fn shell(command: &str, hook: Hook, vm: &VmName, disks: &[PathBuf]) -> std::process::Command {
    let disks: Vec<String> = disks
        .iter()
        .map(|d| {
            std::path::absolute(d)
                .unwrap_or_else(|_| d.clone())
                .display()
                .to_string()
        })
        .collect();
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .env("BLOCKVAULT_VM", vm.as_str())
        .env("BLOCKVAULT_HOOK", hook.name())
        .env("BLOCKVAULT_DISKS", disks.join("\n"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    shell
}

/// Runs one hook; `Ok(())` when it is not configured. The error is one line: which hook,
/// the command, how it failed and the last line it printed on stderr.
pub(crate) async fn run(
    hooks: &Hooks,
    hook: Hook,
    vm: &VmName,
    disks: &[PathBuf],
) -> Result<(), String> {
    let command = match hook {
        Hook::Pre => &hooks.pre,
        Hook::Post => &hooks.post,
    };
    let Some(command) = command else {
        return Ok(());
    };
    let fail = |what: String| format!("{}-snapshot hook `{command}` {what}", hook.name());
    let mut child = tokio::process::Command::from(shell(command, hook, vm, disks))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    let mut stderr = child.stderr.take();
    let timeout = hooks.timeout.unwrap_or(Hooks::DEFAULT_TIMEOUT);
    let waited = tokio::time::timeout(timeout, async {
        let mut text = String::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_string(&mut text).await;
        }
        (child.wait().await, text)
    })
    .await;
    let (status, text) = match waited {
        Ok(result) => result,
        Err(_) => {
            return Err(fail(format!(
                "did not finish within {}s",
                timeout.as_secs()
            )));
        }
    };
    let status = status.map_err(|e| fail(format!("failed: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let said = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    Err(fail(format!("exited with {status}{said}")))
}

/// Makes sure the post-snapshot hook runs once the pre-snapshot hook may have quiesced the VM,
/// even when the job is cancelled (a daemon stopping past its grace period drops the job's
/// future): dropped while armed, it runs the post-hook synchronously, within the hook timeout.
/// The normal path runs the post-hook itself and then disarms it.
pub(crate) struct Thaw<'a> {
    hooks: &'a Hooks,
    vm: &'a VmName,
    disks: &'a [PathBuf],
    armed: bool,
}

impl<'a> Thaw<'a> {
    pub(crate) fn new(hooks: &'a Hooks, vm: &'a VmName, disks: &'a [PathBuf]) -> Thaw<'a> {
        Thaw {
            hooks,
            vm,
            disks,
            armed: hooks.post.is_some(),
        }
    }

    /// The post-hook ran (or was deliberately not run).
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let Some(command) = self.hooks.post.as_deref().filter(|_| self.armed) else {
            return;
        };
        let child = shell(command, Hook::Post, self.vm, self.disks)
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            return;
        };
        let deadline =
            std::time::Instant::now() + self.hooks.timeout.unwrap_or(Hooks::DEFAULT_TIMEOUT);
        while matches!(child.try_wait(), Ok(None)) {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The hooks around a capture: the pre-hook has run, the post-hook runs once (at
/// [`Freeze::end`], or when dropped, through [`Thaw`]), and the window between them is the
/// freeze the job records.
pub(crate) struct Freeze<'a> {
    thaw: Thaw<'a>,
    started: std::time::Instant,
    ended: Option<Duration>,
}

impl<'a> Freeze<'a> {
    /// Runs the pre-hook. When it fails, the post-hook runs all the same (a pre-hook that
    /// failed may have quiesced part of the VM) and the error is the pre-hook's, with any
    /// post-hook error in `warnings`.
    pub(crate) async fn begin(
        hooks: &'a Hooks,
        vm: &'a VmName,
        disks: &'a [PathBuf],
        warnings: &mut impl Extend<String>,
    ) -> Result<Freeze<'a>, String> {
        // From the pre-hook on, the VM may be quiesced: it is thawed on every path, even if
        // the job is cancelled.
        let mut thaw = Thaw::new(hooks, vm, disks);
        if let Err(message) = run(hooks, Hook::Pre, vm, disks).await {
            if let Err(e) = run(hooks, Hook::Post, vm, disks).await {
                warnings.extend([e]);
            }
            thaw.disarm();
            return Err(message);
        }
        Ok(Freeze {
            thaw,
            started: std::time::Instant::now(),
            ended: None,
        })
    }

    /// Runs the post-hook, once (a post-hook failure is a warning), and returns the freeze
    /// window: from the end of the pre-hook to the start of the post-hook.
    pub(crate) async fn end(&mut self, warnings: &mut impl Extend<String>) -> Duration {
        if let Some(window) = self.ended {
            return window;
        }
        let window = self.started.elapsed();
        self.ended = Some(window);
        let Thaw {
            hooks, vm, disks, ..
        } = self.thaw;
        if let Err(e) = run(hooks, Hook::Post, vm, disks).await {
            warnings.extend([e]);
        }
        self.thaw.disarm();
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> VmName {
        VmName::new("vm1").expect("vm")
    }

    #[tokio::test]
    async fn hooks_see_the_vm_and_their_failure_is_explained() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("env");
        let hooks = Hooks {
            pre: Some(format!(
                "echo \"$BLOCKVAULT_HOOK $BLOCKVAULT_VM $BLOCKVAULT_DISKS\" > {}",
                out.display()
            )),
            post: Some("echo 'cannot thaw' >&2; exit 3".into()),
            timeout: None,
        };
        run(&hooks, Hook::Pre, &vm(), &[PathBuf::from("/d/a.img")])
            .await
            .expect("pre");
        assert_eq!(
            std::fs::read_to_string(&out).expect("env"),
            "pre vm1 /d/a.img\n"
        );
        let err = run(&hooks, Hook::Post, &vm(), &[])
            .await
            .expect_err("post fails");
        assert!(err.contains("post-snapshot hook"), "{err}");
        assert!(err.contains("cannot thaw"), "{err}");
        assert!(err.contains("3"), "{err}");
    }

    #[tokio::test]
    async fn a_hook_that_hangs_is_stopped_at_its_timeout() {
        let hooks = Hooks {
            pre: Some("sleep 30".into()),
            post: None,
            timeout: Some(Duration::from_millis(200)),
        };
        let started = std::time::Instant::now();
        let err = run(&hooks, Hook::Pre, &vm(), &[])
            .await
            .expect_err("timeout");
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(run(&hooks, Hook::Post, &vm(), &[]).await.is_ok());
    }

    #[test]
    fn a_dropped_thaw_guard_runs_the_post_hook_and_a_disarmed_one_does_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("thawed");
        let hooks = Hooks {
            pre: None,
            post: Some(format!(
                "echo \"$BLOCKVAULT_HOOK $BLOCKVAULT_VM\" >> {}",
                out.display()
            )),
            timeout: None,
        };
        let vm = vm();
        drop(Thaw::new(&hooks, &vm, &[]));
        assert_eq!(std::fs::read_to_string(&out).expect("ran"), "post vm1\n");
        let mut thaw = Thaw::new(&hooks, &vm, &[]);
        thaw.disarm();
        drop(thaw);
        assert_eq!(std::fs::read_to_string(&out).expect("once"), "post vm1\n");
    }
}
