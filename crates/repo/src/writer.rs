//! What every writer into a repository (a write session, a copy, an early send) does first
//! and last: take the guard and read the damage marks; clear the marks of what it sent again.

use std::collections::HashSet;

use blockvault_core::ChunkId;

use crate::guard::Held;
use crate::{Repository, Result};

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
        let held = self.guard().acquire(self.store(), holder, warnings).await?;
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
