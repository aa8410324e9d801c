//! `blockvault prune`: apply protected VMs' retention to their vault points.

use anyhow::Result;
use blockvault_host::Host;
use serde_json::json;

use super::Report;
use crate::args::PruneArgs;
use crate::format;

pub async fn run(args: PruneArgs, host: &Host) -> Result<Report> {
    let (engine, warnings) = host.engine().await?;
    let vault = host.vault(&args.vault.vault).await?;
    let location = blockvault_host::canonical(&args.vault.vault).to_string();
    let pruned = engine
        .apply_retention_in(&vault, &location, args.vm.as_ref(), args.dry_run)
        .await?;
    let expired: usize = pruned.iter().map(|p| p.expired.len()).sum();
    let mut text = String::new();
    if pruned.is_empty() {
        text.push_str("no VM is protected in this vault: nothing to prune (points of unprotected VMs are kept until deleted)");
    }
    for vm in &pruned {
        text.push_str(&format!(
            "{} (policy {}): {} point(s) kept, {} expired{}\n",
            vm.vm,
            vm.policy,
            vm.kept,
            vm.expired.len(),
            if vm.dry_run { " (dry run)" } else { "" }
        ));
        for point in &vm.expired {
            text.push_str(&format!(
                "  {} {}  {}\n",
                if vm.dry_run {
                    "would delete"
                } else {
                    "deleted"
                },
                point.id,
                format::time(point.time)
            ));
        }
    }
    if args.dry_run && expired > 0 {
        text.push_str("dry run: nothing was deleted; run without --dry-run to delete them");
    } else if expired > 0 {
        text.push_str(
            "their chunks are freed by the next `blockvault gc` (the daemon runs one after \
             pruning)",
        );
    }
    Ok(Report {
        text: text.trim_end().to_owned(),
        json: json!({ "dry_run": args.dry_run, "vms": pruned, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}
