//! Mutations of the JSON body of the framed records (points, configs, leases, epochs,
//! soft-delete markers): a value replaced by one at an edge (numbers at their limits,
//! timestamps at the end of time or impossible, names that break keys, tags of other variants),
//! a field removed, added, renamed or given twice. The runner seals the record again after.

use serde_json::{Value, json};

use crate::mutate::Rng;

const HEADER: usize = 48;

/// Values at the edges of what the records hold.
fn edge(rng: &mut Rng) -> Value {
    let values = [
        json!(0),
        json!(1),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(1e300),
        json!(""),
        json!("x".repeat(200)),
        json!("\u{0}"),
        json!("é"),
        Value::Null,
        json!(true),
        json!([]),
        json!({}),
        json!("9999-12-31T23:59:59.999999999Z"),
        json!("-009999-01-01T00:00:00Z"),
        json!("2026-02-30T00:00:00Z"),
        json!("2016-12-31T23:59:60Z"),
        json!("2026-11-23T10:00:00+14:00"),
        json!("2026-11-23T10:00:00.123456789123Z"),
        json!("2026-11-23"),
        json!("20261123-101503-0000"),
        json!("20261399-999999-ffff"),
        json!("a/b"),
        json!(".hidden"),
        json!("x".repeat(129)),
        json!("web01"),
        json!(65536),
        json!(65535),
        json!(1 << 24),
        json!(1 << 25),
        json!("writer"),
        json!("sweep-pending"),
        json!("application-consistent"),
        json!("replicated"),
        json!({"kind": "replicated", "secondary": ""}),
        json!({"kind": "replicated"}),
        json!({"kind": "single", "secondary": "s3://b/p"}),
        json!({"vault": "x", "primary": "y"}),
        json!([{"name": "d", "source": "", "size": 0, "block_size": 65536,
                "map_digest": "", "blocks": 0, "data_blocks": 1}]),
    ];
    let k = rng.below(values.len());
    values[k].clone()
}

/// Names a record may hold, and some it may not.
const KEYS: [&str; 10] = [
    "retain_until",
    "vault",
    "parent",
    "redundancy",
    "replica-of",
    "stats",
    "kind",
    "unknown",
    "",
    "id",
];

/// Every node of `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (k, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Mutates the JSON body of `bytes` (after its 48-byte header), and says how.
pub fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let Some(body) = bytes.get(HEADER..) else {
        return "nothing (no header)".to_owned();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return "nothing (the body is not JSON)".to_owned();
    };
    let mut all = Vec::new();
    pointers(&value, String::new(), &mut all);
    let at = all[rng.below(all.len())].clone();
    let (parent, last) = at.rsplit_once('/').unwrap_or(("", ""));
    let what = match rng.below(5) {
        0 | 1 => {
            let new = edge(rng);
            let what = format!("set {at:?} to {new}");
            if let Some(node) = value.pointer_mut(&at) {
                *node = new;
            }
            what
        }
        2 => {
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(k) = last.parse::<usize>() {
                        items.remove(k);
                    }
                }
                _ => {}
            }
            format!("remove {at:?}")
        }
        3 => {
            let key = rng.pick(&KEYS);
            let new = edge(rng);
            let what = format!("add {key:?}: {new} to {parent:?}");
            if let Some(Value::Object(map)) = value.pointer_mut(parent) {
                if rng.one_in(2) {
                    // Renamed rather than added.
                    if let Some(old) = map.remove(last) {
                        map.insert(key.to_owned(), old);
                        return finish(rng, bytes, &value, format!("rename {at:?} to {key:?}"));
                    }
                }
                map.insert(key.to_owned(), new);
            }
            what
        }
        _ => {
            // A field of the top object given twice (JSON allows it; a decoder must choose).
            let mut text = serde_json::to_string(&value).unwrap_or_default();
            // (`nth` finds no key in an empty object, whose `{}` takes no comma.)
            if let Value::Object(map) = &value
                && let Some((key, _)) = map.iter().nth(rng.below(map.len()))
            {
                let twice = format!("{{{}:{},", json!(key), edge(rng));
                text.replace_range(..1, &twice);
            }
            bytes.truncate(HEADER);
            bytes.extend_from_slice(text.as_bytes());
            return "a field given twice".to_owned();
        }
    };
    finish(rng, bytes, &value, what)
}

/// Writes `value` back as the body, pretty or compact.
fn finish(rng: &mut Rng, bytes: &mut Vec<u8>, value: &Value, what: String) -> String {
    let body = if rng.one_in(2) {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    bytes.truncate(HEADER);
    bytes.extend_from_slice(&body.unwrap_or_default());
    what
}
