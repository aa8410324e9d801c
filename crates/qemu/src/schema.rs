//! What a running QEMU's QMP accepts, asked of the QEMU itself (`query-qmp-schema`) rather
//! than guessed from its version: distributions backport, and a feature is there or not.

use serde_json::Value;

use crate::{Qmp, Result};

/// Whether `command` takes an argument named `argument` in this QEMU. Introspection lists a
/// command's arguments as one object type whose members include its bases' (flattened).
pub fn command_takes(qmp: &mut Qmp, command: &str, argument: &str) -> Result<bool> {
    let schema = qmp.execute("query-qmp-schema", None)?;
    Ok(takes(&schema, command, argument))
}

fn takes(schema: &Value, command: &str, argument: &str) -> bool {
    let Some(entries) = schema.as_array() else {
        return false;
    };
    let named = |name: &str| entries.iter().find(|e| e["name"] == name);
    let Some(arg_type) = named(command)
        .filter(|c| c["meta-type"] == "command")
        .and_then(|c| c["arg-type"].as_str())
    else {
        return false;
    };
    named(arg_type)
        .and_then(|t| t["members"].as_array())
        .is_some_and(|members| members.iter().any(|m| m["name"] == argument))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::takes;

    #[test]
    fn an_argument_is_found_through_the_commands_argument_type() {
        let schema = json!([
            {"name": "blockdev-backup", "meta-type": "command", "arg-type": "19"},
            {"name": "19", "meta-type": "object",
             "members": [{"name": "device"}, {"name": "on-cbw-error"}]},
            {"name": "on-cbw-error", "meta-type": "command", "arg-type": "20"},
        ]);
        assert!(takes(&schema, "blockdev-backup", "on-cbw-error"));
        assert!(!takes(&schema, "blockdev-backup", "bitmap"));
        assert!(!takes(&schema, "drive-backup", "device"));
        // A type that happens to share the argument's name is not a command.
        assert!(!takes(
            &json!([{"name": "x", "meta-type": "object"}]),
            "x",
            "y"
        ));
        assert!(!takes(&json!({}), "blockdev-backup", "device"));
    }
}
