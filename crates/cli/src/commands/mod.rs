//! One module per command. Each returns a [`Report`]: the summary for people and the same
//! facts as JSON for scripts.

pub mod backup;
pub mod completions;
pub mod daemon;
pub mod forget;
pub mod gc;
pub mod jobs;
pub mod points;
pub mod policy;
pub mod protect;
pub mod prune;
pub mod restore;
pub mod soft_delete;
pub mod vault;
pub mod verify;

/// What a command prints when it succeeds.
#[derive(Debug)]
pub struct Report {
    /// Text for stdout (a summary line or a table).
    pub text: String,
    /// The `--json` document.
    pub json: serde_json::Value,
    /// Things the user should know that did not fail the command (stderr in text mode; part of
    /// the JSON document otherwise).
    pub warnings: Vec<String>,
    /// A non-zero exit code for a command that did its work with a caveat scripts must see
    /// (a backup whose transfer failed).
    pub exit_code: Option<crate::exit::ExitCode>,
}

/// What a VM's snapshot tier takes on this host, as `points` and `items` show it: `bytes` in
/// all, the repository's files, and the kept clones by what they hold alone (what the disks
/// overwrote since) next to their apparent size (not space used).
pub fn tier_space(space: &blockvault_host::TierSpace) -> serde_json::Value {
    serde_json::json!({
        "bytes": space.bytes(),
        "stored_bytes": space.stored,
        "clone_bytes": space.clones,
        "clone_apparent_bytes": space.clones_apparent,
    })
}
