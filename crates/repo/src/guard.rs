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
//! bad in the tier must be written again, not taken as present), so every writer reads them.

use std::collections::HashSet;
use std::fmt::Debug;

use blockvault_core::ChunkId;

use crate::{Repository, Result};

/// How writers into a repository keep out of its cleaner's way (see the module docs).
#[async_trait::async_trait]
pub trait WriteGuard: Debug + Send + Sync {
    /// Takes the right to write for `holder` (a description for messages), waiting as long as
    /// the cleaner needs; things worth telling the user go to `warnings`.
    async fn acquire(
        &self,
        repo: &Repository,
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
    async fn acquire(&self, _: &Repository, _: &str, _: &mut Vec<String>) -> Result<Box<dyn Held>> {
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

impl Repository {
    /// What a writer (write session, copy) does first: take the guard, and learn which chunks
    /// verify found damaged, so they are sent again rather than trusted. The guard must be
    /// held before the writer reads anything that decides which chunks it may skip: the
    /// parent's maps and the chunk index.
    pub(crate) async fn begin_write(
        &self,
        holder: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(Box<dyn Held>, HashSet<ChunkId>)> {
        let held = self.guard().acquire(self, holder, warnings).await?;
        match self.store().damaged_chunks().await {
            Ok(damaged) => Ok((held, damaged.into_iter().collect())),
            Err(e) => {
                if let Some(warning) = held.release().await {
                    warnings.push(warning);
                }
                Err(e.into())
            }
        }
    }

    /// What a writer does once its point is committed: clear the damage marks of the chunks
    /// it sent again. That does not undo the commit, so a failure is a warning.
    pub(crate) async fn clear_damage_marks(
        &self,
        damaged: &HashSet<ChunkId>,
        landed: &[ChunkId],
        warnings: &mut Vec<String>,
    ) {
        for id in landed.iter().filter(|id| damaged.contains(id)) {
            match self.store().clear_damaged(id).await {
                Ok(()) => warnings.push(format!("chunk {id}, found damaged, was sent again")),
                Err(e) => warnings.push(format!("could not clear the damage mark of {id}: {e}")),
            }
        }
    }
}
