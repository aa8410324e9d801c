//! The write-guard port: what a writer (a write session, a copy, an early send) holds while it
//! writes into a repository, so that whoever cleans the repository stays out of its way.
//!
//! A vault is shared by hosts and cleaned by garbage collection, so its guard is a writer's
//! lease (the vault crate's `Lease`), taken before the writer reads anything that decides which
//! chunks it may skip and checked right before its commit. The snapshot tier is written and
//! swept by this host's engine alone, under the VM's snapshot lock, so its guard is
//! [`NoGuard`]: no lease, no writes for it.
//!
//! Damage marks are not the guard's business: both tiers keep them (a chunk a transfer found
//! bad in the tier must be written again, not taken as present), so every writer reads them
//! (`writer.rs`).

use std::fmt::Debug;

use blockvault_store::Store;

use crate::Result;

/// How writers into a repository keep out of its cleaner's way (see the module docs).
#[async_trait::async_trait]
pub trait WriteGuard: Debug + Send + Sync {
    /// Takes the right to write into `store` for `holder` (a description for messages),
    /// waiting as long as the cleaner needs; things worth telling the user go to `warnings`.
    async fn acquire(
        &self,
        store: &Store,
        holder: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Box<dyn Held>>;
}

/// A writer's right to write, from [`WriteGuard::acquire`].
#[async_trait::async_trait]
pub trait Held: Debug + Send + Sync {
    /// Fails unless the right still holds: called right before the commit.
    async fn check(&self) -> Result<()>;

    /// Gives the right up. A failure is returned as a warning: the right lapses by itself.
    async fn release(self: Box<Self>) -> Option<String>;
}

/// The guard of a repository that only this host's engine writes and cleans, under its own
/// locks (the snapshot tier): nothing to take.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoGuard;

#[derive(Debug)]
struct Nothing;

#[async_trait::async_trait]
impl WriteGuard for NoGuard {
    async fn acquire(&self, _: &Store, _: &str, _: &mut Vec<String>) -> Result<Box<dyn Held>> {
        Ok(Box::new(Nothing))
    }
}

#[async_trait::async_trait]
impl Held for Nothing {
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    async fn release(self: Box<Self>) -> Option<String> {
        None
    }
}
