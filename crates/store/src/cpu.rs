//! The one bridge from async code to CPU work: BLAKE3 and zstd never run on a tokio worker.

/// Runs `f` on the rayon pool and waits for it without blocking the async runtime.
///
/// # Panics
/// Re-raises a panic of `f` in the caller.
pub async fn run<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // The receiver only goes away when the caller was cancelled; nothing to report then.
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the rayon pool dropped a task"),
    }
}
