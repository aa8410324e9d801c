//! The vault's write guard: a writer's [`Lease`], so that garbage collection's sweep and the
//! writers stay out of each other's way (see `lease.rs` and the store crate's docs).

use std::time::Duration;

use blockvault_repo::{Held, WriteGuard};
use blockvault_store::Store;

use crate::{Error, Lease};

/// Writers into a vault hold a writer's lease (waiting out a sweep first).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Leases;

#[async_trait::async_trait]
impl WriteGuard for Leases {
    async fn acquire(
        &self,
        store: &Store,
        holder: &str,
        warnings: &mut Vec<String>,
    ) -> blockvault_repo::Result<Box<dyn Held>> {
        let (lease, waited) = Lease::writer(store, holder).await.map_err(into_repo)?;
        if waited >= Duration::from_secs(1) {
            warnings.push(format!(
                "waited {:.1} s for a garbage collection's sweep to run",
                waited.as_secs_f64()
            ));
        }
        Ok(Box::new(lease))
    }
}

#[async_trait::async_trait]
impl Held for Lease {
    async fn check(&self) -> blockvault_repo::Result<()> {
        Lease::check(self).await.map_err(into_repo)
    }

    /// A failure to remove the lease is a warning: it dies by itself after
    /// [`LEASE_TTL`](crate::LEASE_TTL).
    async fn release(self: Box<Self>) -> Option<String> {
        match Lease::release(*self).await {
            Ok(()) => None,
            Err(e) => Some(format!(
                "could not release the vault lease (it expires by itself): {e}"
            )),
        }
    }
}

/// A lease's error, carried through the repository as its guard's error (and read back by
/// `From<blockvault_repo::Error> for Error`).
fn into_repo(e: Error) -> blockvault_repo::Error {
    match e {
        Error::Store(e) => blockvault_repo::Error::Store(e),
        other => blockvault_repo::Error::Guard(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lease_comes_back_out_of_the_repository_as_the_vaults_error() {
        let lost = into_repo(Error::LeaseLost {
            holder: "backup of vm".to_owned(),
            since: Duration::from_secs(200),
        });
        assert!(
            matches!(&lost, blockvault_repo::Error::Guard(_)),
            "{lost:?}"
        );
        let back = Error::from(lost);
        assert!(
            matches!(&back, Error::LeaseLost { holder, .. } if holder == "backup of vm"),
            "{back:?}"
        );
        let store = into_repo(Error::Store(blockvault_store::Error::NotAVault {
            location: "here".to_owned(),
            reason: "empty".to_owned(),
        }));
        assert!(matches!(store, blockvault_repo::Error::Store(_)));
    }
}
