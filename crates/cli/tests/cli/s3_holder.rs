//! Protection held by an S3 vault (Garage, as in `s3`): a second state directory protecting
//! the same VM is refused naming the first host, and `protect` with a wrong secret is refused
//! before anything is recorded. `#[ignore]`d like every S3 test; `scripts/test.sh` runs them.

use std::ffi::OsStr;
use std::path::Path;

use crate::support::{Sandbox, blockvault, blockvault_with_env, standard_disk};

fn s3_vault(name: &str) -> String {
    let Ok(bucket) = std::env::var("BLOCKVAULT_TEST_S3_BUCKET") else {
        panic!(
            "this test needs the Garage server that scripts/test.sh starts \
             (BLOCKVAULT_TEST_S3_BUCKET is not set): run scripts/test.sh"
        );
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("s3://{bucket}/cli/{name}-{nanos}")
}

/// `protect --vault LOCATION --vm web01 --disk DISK --state-dir STATE [with env]`.
fn protect(
    location: &str,
    disk: &Path,
    state: &Path,
    env: &[(&str, &OsStr)],
) -> crate::support::Run {
    blockvault_with_env(
        [
            "protect",
            "--vault",
            location,
            "--vm",
            "web01",
            "--disk",
            disk.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        env,
    )
}

#[test]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
fn a_second_host_is_refused_on_s3_and_a_wrong_secret_records_nothing() {
    let _server = crate::s3::server();
    let location = s3_vault("holder");
    blockvault(["vault", "init", &location]).success();
    let sb = Sandbox::new();
    let disk = standard_disk(&sb.path("disk.img"));
    let (a, b) = (sb.path("state-a"), sb.path("state-b"));

    // A wrong secret: refused with the S3 error's one line, and the catalog holds nothing.
    let wrong = [("AWS_SECRET_ACCESS_KEY", OsStr::new("not-the-secret-0b1c"))];
    let run = protect(&location, &disk.path, &a, &wrong);
    assert_eq!(run.code, 1, "{run}");
    crate::s3_settings::assert_one_short_line(&run, &["403", "AccessDenied"]);
    let items = blockvault(["items", "--json", "--state-dir", a.to_str().expect("utf-8")])
        .success()
        .json();
    assert_eq!(items["items"].as_array().map(Vec::len), Some(0), "{items}");

    protect(&location, &disk.path, &a, &[]).success();
    let run = protect(&location, &disk.path, &b, &[]);
    let error = run.failure(6);
    assert!(error.contains("protected in this vault by host"), "{run}");
    assert!(error.contains(a.to_str().expect("utf-8")), "{run}");
}
