//! The blocking bridge: what blocks a thread (SQLite, `flock`) runs on tokio's blocking pool,
//! never on a runtime worker.

/// Runs `f` on the blocking pool and waits for it without blocking the runtime. A panic in
/// `f` resumes in the caller. When the caller is cancelled (its task aborted), `f` still runs
/// to its end: a catalog transaction commits or rolls back whole, never halfway.
pub(crate) async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_off_the_runtime_thread_and_returns_the_value() {
        let caller = std::thread::current().id();
        let (value, ran_on) = blocking(|| (42, std::thread::current().id())).await;
        assert_eq!(value, 42);
        assert_ne!(ran_on, caller, "ran on the runtime's thread");
    }

    #[tokio::test]
    #[should_panic(expected = "boom")]
    async fn a_panic_resumes_in_the_caller() {
        blocking(|| panic!("boom")).await;
    }
}
