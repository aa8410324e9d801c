//! The key of an encrypted vault through the binary: `vault init --encryption` (repokey and
//! key file, single and replicated), `vault show`, `vault key list|add|passwd|remove|export|
//! import`. Passphrases come from files named by `BLOCKVAULT_PASSWORD_FILE` and
//! `BLOCKVAULT_NEW_PASSWORD_FILE` on the child process; every slot uses the quickest KDF so an
//! unlock costs milliseconds. Every run's output is kept: no passphrase may appear in any of
//! it, nor in any file of the vault or the state directory.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

const QUICK: [&str; 4] = ["--kdf-memory-mib", "8", "--kdf-iterations", "1"];
const FIRST: &str = "first correct horse battery";
const SECOND: &str = "second staple tornado";
const THIRD: &str = "third purple elephant";

/// A sandbox with passphrase files and one state directory per host; every run recorded.
struct Keys {
    sb: Sandbox,
    runs: RefCell<Vec<Run>>,
}

impl Keys {
    fn new() -> Keys {
        let keys = Keys {
            sb: Sandbox::new(),
            runs: RefCell::new(Vec::new()),
        };
        for (name, pass) in [("first", FIRST), ("second", SECOND), ("third", THIRD)] {
            let path = keys.sb.path(name);
            fs::write(&path, format!("{pass}\n")).expect("passphrase file");
            let mut perms = fs::metadata(&path).expect("meta").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
            fs::set_permissions(&path, perms).expect("chmod");
        }
        keys
    }

    fn path(&self, name: &str) -> PathBuf {
        self.sb.path(name)
    }

    fn state(&self, host: &str) -> PathBuf {
        self.sb.path(&format!("state-{host}"))
    }

    /// `blockvault ARGS` on host `host` with the current passphrase `pass` and the new one
    /// `new` (names of the passphrase files; "" for none).
    fn run(&self, host: &str, pass: &str, new: &str, args: &[&str]) -> Run {
        let state = self.state(host);
        let mut all: Vec<&str> = vec!["--state-dir", arg(&state)];
        all.extend_from_slice(args);
        let (pass, new) = (self.file(pass), self.file(new));
        let env: Vec<(&str, &OsStr)> = vec![
            ("BLOCKVAULT_PASSWORD_FILE", pass.as_os_str()),
            ("BLOCKVAULT_PASSWORD_COMMAND", OsStr::new("")),
            ("BLOCKVAULT_NEW_PASSWORD_FILE", new.as_os_str()),
            ("BLOCKVAULT_NEW_PASSWORD_COMMAND", OsStr::new("")),
            ("BLOCKVAULT_KEY_FILE", OsStr::new("")),
        ];
        let run = blockvault_with_env(&all, &env);
        self.runs.borrow_mut().push(Run {
            args: run.args.clone(),
            code: run.code,
            stdout: run.stdout.clone(),
            stderr: run.stderr.clone(),
        });
        run
    }

    /// `vault key list --json` of `vault` on host `host` (no passphrase needed).
    fn list(&self, host: &str, vault: &str) -> Value {
        self.run(
            host,
            "",
            "",
            &["--json", "vault", "key", "list", "--vault", vault],
        )
        .success()
        .json()
    }

    fn file(&self, name: &str) -> PathBuf {
        if name.is_empty() {
            PathBuf::new()
        } else {
            self.sb.path(name)
        }
    }

    /// `vault init --json --vault VAULT --encryption MODE` with the quick KDF, checked.
    fn init(&self, host: &str, vault: &Path, extra: &[&str]) -> Value {
        let mut args = vec!["--json", "vault", "init", "--vault", arg(vault)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&QUICK);
        let run = self.run(host, "first", "", &args).success();
        run.json()
    }

    /// Whether passphrase file `pass` opens the vault on `host` (an export to stdout unlocks).
    fn opens(&self, host: &str, vault: &Path, pass: &str) -> bool {
        let run = self.run(
            host,
            pass,
            "",
            &["vault", "key", "export", "--vault", arg(vault)],
        );
        match run.code {
            0 => true,
            7 => {
                run.failure(7);
                false
            }
            _ => panic!("unexpected\n{run}"),
        }
    }

    /// No passphrase in any output so far, nor in any file under the sandbox but the
    /// passphrase files themselves.
    fn assert_no_passphrase_anywhere(&self) {
        for run in self.runs.borrow().iter() {
            for pass in [FIRST, SECOND, THIRD] {
                assert!(
                    !run.stdout.contains(pass) && !run.stderr.contains(pass),
                    "a passphrase in the output\n{run}"
                );
            }
        }
        let mut checked = 0;
        for file in walk(&self.path("")) {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if ["first", "second", "third"].contains(&name) {
                continue;
            }
            let bytes = fs::read(&file).expect("read");
            for pass in [FIRST, SECOND, THIRD] {
                assert!(
                    !bytes.windows(pass.len()).any(|w| w == pass.as_bytes()),
                    "a passphrase in {}",
                    file.display()
                );
            }
            checked += 1;
        }
        assert!(checked > 0, "no file was checked");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

fn config_bytes(vault: &Path) -> Vec<u8> {
    fs::read(vault.join("vault.config")).expect("vault.config")
}

fn slot_ids(doc: &Value) -> Vec<String> {
    doc["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn init_show_and_list_say_how_a_vault_is_encrypted() {
    let k = Keys::new();
    let vault = k.path("vault");
    let doc = k.init("a", &vault, &["--encryption"]);
    let e = &doc["encryption"];
    assert_eq!(e["scheme"], "aes-256-gcm", "{doc}");
    assert_eq!(e["key"], "vault", "{doc}");
    assert_eq!(e["key_file"], Value::Null, "{doc}");
    let key_id = e["key_id"].as_str().expect("key id").to_owned();
    assert_eq!(key_id.len(), 16);

    let text = k.run("a", "", "", &["vault", "show", "--vault", arg(&vault)]);
    let text = text.success();
    assert!(
        text.stdout.contains(&format!(
            "encryption: aes-256-gcm, key {key_id} kept in the vault (1 slot)"
        )),
        "{text}"
    );
    let show = k
        .run(
            "a",
            "",
            "",
            &["--json", "vault", "show", "--vault", arg(&vault)],
        )
        .success()
        .json();
    assert_eq!(show["encryption"]["key_id"], key_id.as_str(), "{show}");
    assert_eq!(show["encryption"]["slots"], 1, "{show}");

    let list = k.list("a", arg(&vault));
    assert_eq!(list["key_id"], key_id.as_str(), "{list}");
    assert_eq!(list["slots"][0]["kdf"]["memory_kib"], 8192, "{list}");
    assert_eq!(list["slots"][0]["kdf"]["iterations"], 1, "{list}");
    assert_eq!(slot_ids(&list).len(), 1);

    // The text of init tells the user to export the key, plainly.
    let other = k.path("other");
    let mut args = vec!["vault", "init", "--vault", arg(&other), "--encryption"];
    args.extend_from_slice(&QUICK);
    let run = k.run("a", "first", "", &args).success();
    assert!(run.stdout.contains("vault key export"), "{run}");
    assert!(
        run.stdout
            .contains("a lost key or passphrase cannot be recovered, by anyone"),
        "{run}"
    );

    // A plain vault says so.
    let plain = k.path("plain");
    k.run("a", "", "", &["vault", "init", "--vault", arg(&plain)])
        .success();
    let run = k
        .run("a", "", "", &["vault", "show", "--vault", arg(&plain)])
        .success();
    assert!(run.stdout.contains("encryption: none"), "{run}");
    let run = k.run(
        "a",
        "",
        "",
        &["vault", "key", "list", "--vault", arg(&plain)],
    );
    assert!(run.failure(6).contains("not encrypted"), "{run}");
    k.assert_no_passphrase_anywhere();
}

#[test]
fn a_wrong_passphrase_is_exit_7_and_changes_nothing() {
    let k = Keys::new();
    let vault = k.path("vault");
    k.init("a", &vault, &["--encryption"]);
    let before = config_bytes(&vault);
    let v = arg(&vault);
    for args in [
        vec!["vault", "key", "add", "--vault", v],
        vec!["vault", "key", "passwd", "--vault", v],
        vec!["vault", "key", "export", "--vault", v],
    ] {
        let run = k.run("a", "second", "third", &args);
        let line = run.failure(7);
        assert!(line.contains("passphrase"), "{run}");
        assert_eq!(config_bytes(&vault), before, "{run}");
    }
    // Removing needs a slot that exists, more than one, then the key.
    k.run(
        "a",
        "first",
        "second",
        &["vault", "key", "add", "--vault", v],
    )
    .success();
    let two = config_bytes(&vault);
    let list = k.list("a", v);
    let ids = slot_ids(&list);
    let run = k.run(
        "a",
        "third",
        "",
        &["vault", "key", "remove", "--vault", v, "--slot", &ids[0]],
    );
    run.failure(7);
    assert_eq!(config_bytes(&vault), two);
    // No passphrase at all: exit 7, saying how to give one.
    let run = k.run("a", "", "", &["vault", "key", "export", "--vault", v]);
    assert!(run.failure(7).contains("BLOCKVAULT_PASSWORD_FILE"), "{run}");
    // An export to a file that fails writes no file.
    let out = k.path("never.key");
    let run = k.run(
        "a",
        "third",
        "",
        &["vault", "key", "export", "--vault", v, "--out", arg(&out)],
    );
    run.failure(7);
    assert!(!out.exists());
    k.assert_no_passphrase_anywhere();
}

#[test]
fn passwd_replaces_the_slot_and_add_makes_another() {
    let k = Keys::new();
    let vault = k.path("vault");
    k.init("a", &vault, &["--encryption"]);
    let v = arg(&vault);
    let run = k
        .run(
            "a",
            "first",
            "second",
            &["--json", "vault", "key", "passwd", "--vault", v],
        )
        .success();
    let doc = run.json();
    assert_eq!(doc["removed"][0], doc["opened"], "{doc}");
    assert_ne!(doc["added"][0], doc["opened"], "{doc}");
    assert_eq!(slot_ids(&doc).len(), 1, "{doc}");
    // The old slot's KDF carries over.
    assert_eq!(doc["slots"][0]["kdf"]["memory_kib"], 8192, "{doc}");
    assert!(!k.opens("a", &vault, "first"));
    assert!(k.opens("a", &vault, "second"));

    let mut args = vec!["vault", "key", "add", "--vault", v];
    args.extend_from_slice(&QUICK);
    let run = k.run("a", "second", "third", &args).success();
    assert!(run.stdout.contains("2 slots"), "{run}");
    assert!(k.opens("a", &vault, "second"));
    assert!(k.opens("a", &vault, "third"));
    assert!(!k.opens("a", &vault, "first"));

    // Remove: an unknown slot is exit 3, then the slot of "second" goes, then the last stays.
    let run = k.run(
        "a",
        "third",
        "",
        &["vault", "key", "remove", "--vault", v, "--slot", "0000abcd"],
    );
    run.failure(3);
    let list = k.list("a", v);
    let ids = slot_ids(&list);
    k.run(
        "a",
        "third",
        "",
        &["vault", "key", "remove", "--vault", v, "--slot", &ids[0]],
    )
    .success();
    assert!(!k.opens("a", &vault, "second"));
    assert!(k.opens("a", &vault, "third"));
    let before = config_bytes(&vault);
    let run = k.run(
        "a",
        "third",
        "",
        &["vault", "key", "remove", "--vault", v, "--slot", &ids[1]],
    );
    assert!(run.failure(6).contains("last key slot"), "{run}");
    assert_eq!(config_bytes(&vault), before);
    assert!(k.opens("a", &vault, "third"));
    k.assert_no_passphrase_anywhere();
}

#[test]
fn an_import_restores_removed_slots_and_refuses_another_vaults_key() {
    let k = Keys::new();
    let vault = k.path("vault");
    k.init("a", &vault, &["--encryption"]);
    let v = arg(&vault);
    k.run(
        "a",
        "first",
        "second",
        &["vault", "key", "add", "--vault", v],
    )
    .success();
    let export = k.path("vault.key");
    k.run(
        "a",
        "first",
        "",
        &[
            "vault",
            "key",
            "export",
            "--vault",
            v,
            "--out",
            arg(&export),
        ],
    )
    .success();
    let mode = fs::metadata(&export).expect("export").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // Never over an existing file.
    let before = fs::read(&export).expect("export");
    let run = k.run(
        "a",
        "first",
        "",
        &[
            "vault",
            "key",
            "export",
            "--vault",
            v,
            "--out",
            arg(&export),
        ],
    );
    run.failure(6);
    assert_eq!(fs::read(&export).expect("export"), before);

    // The slot of "second" removed by mistake, then restored from the export.
    let list = k.list("a", v);
    let ids = slot_ids(&list);
    k.run(
        "a",
        "first",
        "",
        &["vault", "key", "remove", "--vault", v, "--slot", &ids[1]],
    )
    .success();
    assert!(!k.opens("a", &vault, "second"));
    let doc = k
        .run(
            "a",
            "first",
            "",
            &[
                "--json",
                "vault",
                "key",
                "import",
                "--vault",
                v,
                arg(&export),
            ],
        )
        .success()
        .json();
    assert_eq!(doc["added"], serde_json::json!([ids[1]]), "{doc}");
    assert!(k.opens("a", &vault, "second"));

    // Another vault's key is refused (exit 7), nothing changed.
    let other = k.path("other");
    k.init("a", &other, &["--encryption"]);
    let other_key = k.path("other.key");
    k.run(
        "a",
        "first",
        "",
        &[
            "vault",
            "key",
            "export",
            "--vault",
            arg(&other),
            "--out",
            arg(&other_key),
        ],
    )
    .success();
    let before = config_bytes(&vault);
    let run = k.run(
        "a",
        "first",
        "",
        &["vault", "key", "import", "--vault", v, arg(&other_key)],
    );
    assert!(run.failure(7).contains("key"), "{run}");
    assert_eq!(config_bytes(&vault), before);
    k.assert_no_passphrase_anywhere();
}

#[test]
fn a_key_file_vault_moves_to_a_new_host_by_export_and_import() {
    let k = Keys::new();
    let vault = k.path("vault");
    let doc = k.init("a", &vault, &["--encryption", "key-file"]);
    let e = &doc["encryption"];
    assert_eq!(e["key"], "key-file", "{doc}");
    let id = doc["id"].as_str().expect("id").to_owned();
    let key_file = k.state("a").join("keys").join(format!("{id}.key"));
    assert_eq!(e["key_file"], arg(&key_file), "{doc}");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).expect("meta").permissions())
            & 0o777
    };
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(key_file.parent().expect("dir")), 0o700);
    // The vault's config holds no slot.
    let config = String::from_utf8_lossy(&config_bytes(&vault)).into_owned();
    assert!(!config.contains("\"slots\""), "{config}");
    assert!(config.contains("key-file"), "{config}");
    let v = arg(&vault);
    assert!(k.opens("a", &vault, "first"));
    let show = k
        .run("a", "", "", &["vault", "show", "--vault", v])
        .success();
    assert!(
        show.stdout
            .contains(&format!("kept in the key file {}", key_file.display())),
        "{show}"
    );

    // Host b has no key file: exit 7 naming where it looked.
    let missing = k.state("b").join("keys").join(format!("{id}.key"));
    let run = k.run("b", "first", "", &["vault", "key", "export", "--vault", v]);
    assert!(run.failure(7).contains(arg(&missing)), "{run}");

    // Export on host a, import on host b.
    let export = k.path("carried.key");
    k.run(
        "a",
        "first",
        "",
        &[
            "vault",
            "key",
            "export",
            "--vault",
            v,
            "--out",
            arg(&export),
        ],
    )
    .success();
    // The wrong passphrase does not install it.
    let run = k.run(
        "b",
        "second",
        "",
        &["vault", "key", "import", "--vault", v, arg(&export)],
    );
    run.failure(7);
    assert!(!missing.exists());
    let doc = k
        .run(
            "b",
            "first",
            "",
            &[
                "--json",
                "vault",
                "key",
                "import",
                "--vault",
                v,
                arg(&export),
            ],
        )
        .success()
        .json();
    assert_eq!(doc["written"][0], arg(&missing), "{doc}");
    assert_eq!(mode(&missing), 0o600);
    assert!(k.opens("b", &vault, "first"));
    // Installed once: a second import is refused, the file kept.
    let run = k.run(
        "b",
        "first",
        "",
        &["vault", "key", "import", "--vault", v, arg(&export)],
    );
    run.failure(6);

    // A key file of another vault where this one's should be: refused by its key id.
    let other = k.path("other");
    let doc = k.init("c", &other, &["--encryption", "key-file"]);
    let other_file = PathBuf::from(doc["encryption"]["key_file"].as_str().expect("path"));
    fs::copy(&other_file, &key_file).expect("swap key file");
    let run = k.run("a", "first", "", &["vault", "key", "export", "--vault", v]);
    assert!(run.failure(7).contains("key"), "{run}");

    // Slot changes on a key-file vault write the key file, not the config.
    let before = config_bytes(&vault);
    k.run(
        "b",
        "first",
        "second",
        &["vault", "key", "passwd", "--vault", v],
    )
    .success();
    assert_eq!(config_bytes(&vault), before);
    assert!(k.opens("b", &vault, "second"));
    assert!(!k.opens("b", &vault, "first"));
    k.assert_no_passphrase_anywhere();
}

#[test]
fn init_refuses_before_writing_anything() {
    let k = Keys::new();
    let vault = k.path("vault");
    let v = arg(&vault);
    // --key-file without key-file mode, or without encryption.
    let run = k.run(
        "a",
        "first",
        "",
        &[
            "vault",
            "init",
            "--vault",
            v,
            "--encryption",
            "--key-file",
            arg(&k.path("k")),
        ],
    );
    run.failure(2);
    let run = k.run(
        "a",
        "first",
        "",
        &["vault", "init", "--vault", v, "--kdf-iterations", "2"],
    );
    run.failure(2);
    // A key file path that exists.
    let taken = k.path("taken.key");
    fs::write(&taken, "mine").expect("taken");
    let mut args = vec![
        "vault",
        "init",
        "--vault",
        v,
        "--encryption",
        "key-file",
        "--key-file",
        arg(&taken),
    ];
    args.extend_from_slice(&QUICK);
    let run = k.run("a", "first", "", &args);
    assert!(run.failure(6).contains(arg(&taken)), "{run}");
    assert_eq!(fs::read(&taken).expect("taken"), b"mine");
    // KDF out of bounds, naming them.
    let run = k.run(
        "a",
        "first",
        "",
        &[
            "vault",
            "init",
            "--vault",
            v,
            "--encryption",
            "--kdf-memory-mib",
            "4",
        ],
    );
    assert!(run.failure(2).contains("8..=4096"), "{run}");
    let run = k.run(
        "a",
        "first",
        "",
        &[
            "vault",
            "init",
            "--vault",
            v,
            "--encryption",
            "--kdf-iterations",
            "0",
        ],
    );
    assert!(run.failure(2).contains("1..=64"), "{run}");
    // No passphrase: exit 2, saying how to give one.
    let mut args = vec!["vault", "init", "--vault", v, "--encryption"];
    args.extend_from_slice(&QUICK);
    let run = k.run("a", "", "", &args);
    assert!(run.failure(2).contains("BLOCKVAULT_PASSWORD_FILE"), "{run}");
    assert!(!vault.exists(), "a refused init left {}", vault.display());
    let keys = k.state("a").join("keys");
    assert!(!keys.exists() || fs::read_dir(&keys).expect("keys").next().is_none());
    // A key file given elsewhere is written there, and the user told to name it.
    let elsewhere = k.path("away/vault.key");
    let mut args = vec![
        "vault",
        "init",
        "--vault",
        v,
        "--encryption",
        "key-file",
        "--key-file",
        arg(&elsewhere),
    ];
    args.extend_from_slice(&QUICK);
    let run = k.run("a", "first", "", &args).success();
    assert!(run.stdout.contains("BLOCKVAULT_KEY_FILE="), "{run}");
    assert!(elsewhere.exists());
    k.assert_no_passphrase_anywhere();
}

#[test]
fn a_replicated_vaults_replica_carries_the_same_key_and_every_slot_change() {
    let k = Keys::new();
    let (vault, replica) = (k.path("vault"), k.path("replica"));
    let doc = k.init(
        "a",
        &vault,
        &[
            "--encryption",
            "--redundancy",
            "replicated",
            "--secondary",
            arg(&replica),
        ],
    );
    let key_id = doc["encryption"]["key_id"]
        .as_str()
        .expect("key id")
        .to_owned();
    let encryption_of = |dir: &Path| -> Value {
        let bytes = config_bytes(dir);
        let at = bytes
            .windows(8)
            .position(|w| w == b"{\n  \"id\"")
            .expect("json");
        let config: Value = serde_json::from_slice(&bytes[at..]).expect("config json");
        config["encryption"].clone()
    };
    assert_eq!(encryption_of(&vault), encryption_of(&replica));
    assert_eq!(encryption_of(&replica)["key_id"], key_id.as_str());
    k.run(
        "a",
        "first",
        "second",
        &["vault", "key", "add", "--vault", arg(&vault)],
    )
    .success();
    assert_eq!(
        encryption_of(&vault)["slots"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(encryption_of(&vault), encryption_of(&replica));
    // The replica opens with either passphrase on its own, and refuses a change made there.
    assert!(k.opens("a", &replica, "second"));
    let before = config_bytes(&replica);
    let run = k.run(
        "a",
        "first",
        "third",
        &["vault", "key", "add", "--vault", arg(&replica)],
    );
    assert!(run.failure(6).contains("replica"), "{run}");
    assert_eq!(config_bytes(&replica), before);
    k.assert_no_passphrase_anywhere();
}

#[test]
fn key_commands_teach_with_examples_and_exit_codes() {
    for (command, example) in [
        ("list", "blockvault vault key list --vault /srv/vault"),
        ("add", "blockvault vault key add --vault /srv/vault"),
        ("passwd", "blockvault vault key passwd --vault /srv/vault"),
        (
            "remove",
            "blockvault vault key remove --vault /srv/vault --slot",
        ),
        (
            "export",
            "blockvault vault key export --vault /srv/vault --out",
        ),
        ("import", "blockvault vault key import --vault /srv/vault"),
    ] {
        let run = blockvault(["vault", "key", command, "--help"]).success();
        for needle in [example, "Exit codes:", "BLOCKVAULT_PASSWORD_FILE"] {
            assert!(
                run.stdout.contains(needle),
                "{command} lacks {needle:?}\n{run}"
            );
        }
    }
    let run = blockvault(["vault", "init", "--help"]).success();
    for needle in [
        "--encryption",
        "--key-file",
        "--kdf-memory-mib",
        "cannot be recovered, by anyone",
    ] {
        assert!(run.stdout.contains(needle), "init lacks {needle:?}\n{run}");
    }
}

#[test]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
fn keys_of_an_encrypted_vault_on_s3() {
    let _server = crate::s3::server();
    let location = crate::s3::s3_vault("keys");
    let vault = Path::new(&location);
    let k = Keys::new();
    let doc = k.init("a", vault, &["--encryption"]);
    let key_id = doc["encryption"]["key_id"]
        .as_str()
        .expect("key id")
        .to_owned();
    let show = k
        .run("a", "", "", &["vault", "show", "--vault", &location])
        .success();
    assert!(
        show.stdout
            .contains(&format!("key {key_id} kept in the vault (1 slot)")),
        "{show}"
    );
    k.run(
        "a",
        "first",
        "second",
        &["vault", "key", "passwd", "--vault", &location],
    )
    .success();
    assert!(!k.opens("a", vault, "first"));
    assert!(k.opens("a", vault, "second"));
    k.run(
        "a",
        "second",
        "third",
        &["vault", "key", "add", "--vault", &location],
    )
    .success();
    let list = k.list("a", &location);
    assert_eq!(slot_ids(&list).len(), 2, "{list}");
    let run = k.run(
        "a",
        "first",
        "",
        &["vault", "key", "add", "--vault", &location],
    );
    run.failure(7);
    k.assert_no_passphrase_anywhere();
}
