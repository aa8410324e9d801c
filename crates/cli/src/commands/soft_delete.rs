//! `blockvault stop-protection` and `undelete`: the end of the protection lifecycle.

use anyhow::Result;
use blockvault_host::Host;
use blockvault_jobs::{ProtectionState, StopMode};
use serde_json::json;

use super::Report;
use crate::args::{StopProtectionArgs, UndeleteArgs};
use crate::format;

pub async fn stop(args: StopProtectionArgs, host: &Host) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let item = blockvault_host::protected_item(&engine, &args.vm).await?;
    let mode = if args.delete_data {
        StopMode::DeleteData
    } else {
        StopMode::RetainData
    };
    let vault = host.job_vault(&item.vault.parse()?).await?;
    let outcome = engine
        .stop_protection(vault.as_ref(), &args.vm, mode)
        .await?;
    if let (Some(job), Some(cause)) = (&outcome.job, outcome.failure) {
        return Err(blockvault_host::Error::JobFailed {
            job: job.id,
            error: job.error.clone().unwrap_or_default(),
            cause: Some(cause),
        }
        .into());
    }
    let item = &outcome.item;
    let text = match (&outcome.job, item.state) {
        (Some(job), ProtectionState::SoftDeleted { purge_after, .. }) => format!(
            "job {} {}: protection of {} stopped and its backup data in {} soft-deleted until \
             {} (then purged; `blockvault undelete --vm {}` brings it back until then); {} \
             snapshot-tier point(s) removed",
            job.id,
            job.status,
            item.vm,
            item.vault,
            format::time(purge_after),
            item.vm,
            outcome.snapshot_points_removed.len()
        ),
        _ => format!(
            "protection of {} stopped; its recovery points are retained in {} and the snapshot \
             tier (`blockvault protect --vault {} --vm {}` resumes it)",
            item.vm, item.vault, item.vault, item.vm
        ),
    };
    Ok(Report {
        text,
        json: json!({
            "mode": mode,
            "job": outcome.job,
            "item": item,
            "snapshot_points_removed": outcome.snapshot_points_removed,
            "warnings": warnings,
        }),
        warnings,
        exit_code: None,
    })
}

pub async fn undelete(args: UndeleteArgs, host: &Host) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    // The item names the vault; without one there is nothing to undelete.
    let vm = args.vm.clone();
    let item = engine
        .catalog()
        .call(move |c| c.protected_item(&vm))
        .await?;
    // Forgotten points (`forget`): a point named, or a vault named for a VM whose data is
    // not soft-deleted.
    let vm_deleted = item
        .as_ref()
        .is_some_and(|i| matches!(i.state, ProtectionState::SoftDeleted { .. }));
    if args.point.is_some() || (args.vault.is_some() && !vm_deleted) {
        return super::forget::undelete(args, host).await;
    }
    let Some(item) = item else {
        return Err(blockvault_jobs::Error::NotSoftDeleted {
            vm: args.vm.clone(),
        }
        .into());
    };
    let vault = host.job_vault(&item.vault.parse()?).await?;
    let item = engine.undelete(vault.as_ref(), &args.vm).await?;
    let text = format!(
        "undeleted the backup data of {} in {}: every point is back; protection stays stopped \
         with the data retained (`blockvault protect --vault {} --vm {}` resumes it)",
        item.vm, item.vault, item.vault, item.vm
    );
    Ok(Report {
        text,
        json: json!({ "item": item, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

/// The state as `items` shows it.
pub fn state_text(state: &ProtectionState) -> String {
    match state {
        ProtectionState::Protected => "Protected".to_owned(),
        ProtectionState::Stopped { .. } => "Stopped (data retained)".to_owned(),
        ProtectionState::SoftDeleted { purge_after, .. } => {
            format!("Soft-deleted (purged {})", format::date(*purge_after))
        }
    }
}
