//! The vault on a real S3 server: the Garage that `scripts/test.sh` starts on 127.0.0.1 and
//! describes in the environment (`AWS_*`, `BLOCKVAULT_TEST_S3_BUCKET`, `GARAGE_CONFIG`,
//! `GARAGE_PID_FILE`). The tests that need it are `#[ignore]`d, so that a plain `cargo test`
//! lists them as ignored instead of passing them unrun; `scripts/test.sh` runs them
//! (`--include-ignored`), and without the server they fail, saying why.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blockvault_store::{S3Options, Secret, Store};
use blockvault_vault::{BackupRequest, Error, PointSelector, Progress, TransferOptions, Vault};
use object_store::ObjectStoreExt;

use crate::support::{Image, Write, block_size, files_in, restore, vm};

/// One test at a time talks to the server: the outage test takes it down.
pub(crate) static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) struct S3 {
    bucket: String,
    options: S3Options,
}

/// The server `scripts/test.sh` started; a test that needs it fails without it.
pub(crate) fn s3() -> S3 {
    let Ok(bucket) = std::env::var("BLOCKVAULT_TEST_S3_BUCKET") else {
        panic!(
            "this test needs the Garage server that scripts/test.sh starts \
             (BLOCKVAULT_TEST_S3_BUCKET is not set): run scripts/test.sh"
        );
    };
    S3 {
        bucket,
        options: S3Options::from_env().expect("S3 settings in the environment"),
    }
}

/// Settings for an endpoint on loopback that is no S3 server: credentials that none checks.
fn loopback(port: u16) -> S3Options {
    S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("garage".into()),
        access_key_id: Some("GK0000".into()),
        secret_access_key: Some(Secret::new("not-a-secret")),
        allow_http: true,
        ..S3Options::default()
    }
}

/// A prefix no other test (or earlier run) uses.
fn unique(name: &str) -> String {
    let nanos = jiff::Timestamp::now().as_nanosecond();
    format!("test/{name}-{nanos}")
}

impl S3 {
    pub(crate) fn store(&self, name: &str) -> Store {
        Store::s3(&self.bucket, &unique(name), &self.options).expect("s3 store")
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn the_chunk_store_conforms_on_garage() {
    let s3 = s3();
    let _server = SERVER.lock().await;
    blockvault_store::conformance::run(&s3.store("conformance")).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn backups_to_garage_restore_byte_for_byte() {
    let s3 = s3();
    let _server = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::init(s3.store("roundtrip")).await.expect("init");
    let bs = block_size(256 << 10);
    let mut image = Image::create(dir.path().join("disk.img"), 16 << 20);
    for i in 0..12u64 {
        image.apply(Write {
            offset: i * (1 << 20) + 4096,
            len: 300_000,
            kind: (i % 5) as u8 + 1,
        });
    }
    let first = crate::support::backup(&vault, "vm1", &[&image], bs)
        .await
        .expect("backup");
    let gen0 = image.content.clone();
    image.apply(Write {
        offset: 5 << 20,
        len: 1000,
        kind: 2,
    });
    let second = crate::support::backup(&vault, "vm1", &[&image], bs)
        .await
        .expect("backup");
    assert_eq!(second.point.stats.chunks_stored, 1, "one changed block");
    assert!(first.point.stats.chunks_stored > 10);

    let reopened = Vault::open(vault.store().clone()).await.expect("open");
    for (point, content) in [(&first.point, &gen0), (&second.point, &image.content)] {
        let out = dir.path().join(point.id.as_str());
        restore(
            &reopened,
            "vm1",
            PointSelector::Id(point.id.to_string()),
            &out,
        )
        .await
        .expect("restore");
        assert!(std::fs::read(out.join("disk.img")).expect("read") == *content);
    }
}

/// A port on loopback where nothing listens: connections to it are refused, as they are
/// while a server restarts.
fn dead_port() -> u16 {
    // The listener is dropped: nothing listens on the port now.
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_fails_quickly_and_clearly_with_few_retries() {
    let port = dead_port();
    let options = S3Options {
        max_retries: Some(2),
        ..loopback(port)
    };
    let started = Instant::now();
    let store = Store::s3("bucket", "dead", &options).expect("store");
    let err = Vault::open(store).await.expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, Error::Store(blockvault_store::Error::Backend { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(&port.to_string()) || err.to_string().contains("connect"),
        "{err}"
    );
}

/// Refused connections are retried for the whole budget (they are what a restarting server
/// gives), and then the error says that the budget ran out and how to change it.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stays_down_fails_clearly_once_the_retry_budget_is_spent() {
    let options = S3Options {
        retry_budget_secs: Some(3),
        ..loopback(dead_port())
    };
    let started = Instant::now();
    let store = Store::s3("bucket", "down", &options).expect("store");
    let err = Vault::open(store).await.expect_err("nothing listens");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "retried for the budget, not more: {took:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("retry budget is 3s")
            && text.contains("BLOCKVAULT_S3_RETRY_BUDGET_SECS")
            && text.contains("vault.config"),
        "{text}"
    );
    eprintln!("after {took:.1?}: {text}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn wrong_credentials_are_refused_without_echoing_the_secret() {
    let s3 = s3();
    let _server = SERVER.lock().await;
    let options = S3Options {
        secret_access_key: Some(Secret::new("wrong-secret-0123456789abcdef")),
        max_retries: Some(1),
        ..s3.options.clone()
    };
    let store = Store::s3(&s3.bucket, &unique("creds"), &options).expect("store");
    let err = Vault::init(store).await.expect_err("bad secret");
    let message = format!("{err} {err:?}");
    assert!(
        !message.contains("wrong-secret-0123456789abcdef"),
        "{message}"
    );
    if let Some(real) = &s3.options.secret_access_key {
        assert!(!message.contains(real.expose()), "{message}");
    }
    assert!(
        matches!(err, Error::Store(blockvault_store::Error::Backend { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn a_missing_bucket_is_named() {
    let s3 = s3();
    let _server = SERVER.lock().await;
    let store = Store::s3("no-such-bucket-blockvault", "", &s3.options).expect("store");
    let err = Vault::open(store).await.expect_err("no bucket");
    assert!(
        matches!(
            err,
            Error::Store(blockvault_store::Error::BucketMissing { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("no-such-bucket-blockvault"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn a_chunk_deleted_or_corrupted_in_the_bucket_is_named_at_restore() {
    let s3 = s3();
    let _server = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::init(s3.store("damage")).await.expect("init");
    let bs = block_size(64 << 10);
    let mut image = Image::create(dir.path().join("disk.img"), 1 << 20);
    image.apply(Write {
        offset: 0,
        len: 64 << 10,
        kind: 1,
    });
    image.apply(Write {
        offset: 5 * (64 << 10),
        len: 64 << 10,
        kind: 2,
    });
    let point = crate::support::backup(&vault, "vm1", &[&image], bs)
        .await
        .expect("backup")
        .point;
    let disk = &point.disks[0];
    let map = vault
        .store()
        .get_map(&point.vm, &point.id, &disk.name, None)
        .await
        .expect("map");
    let objects = vault.store().objects();
    let key = |i: usize| {
        let hex = map.get(i).expect("a block of the map").to_hex();
        object_store::path::Path::from(format!("chunks/{}/{hex}", &hex[..2]))
    };
    objects
        .put(&key(5), b"garbage".to_vec().into())
        .await
        .expect("corrupt");
    let out = dir.path().join("out");
    let err = restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(&err, Error::Repo(blockvault_repo::Error::Block { offset, source, .. })
            if *offset == 5 * (64 << 10) && source.is_corrupt()),
        "{err}"
    );
    // The same block deleted (one damaged block at a time: with two, whichever concurrent
    // fetch fails first is the one reported).
    objects.delete(&key(5)).await.expect("delete");
    let err = restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, Error::Repo(blockvault_repo::Error::Block { offset, source, .. })
            if *offset == 5 * (64 << 10) && source.is_missing()),
        "{err}"
    );
    assert!(files_in(&out).is_empty());
}

/// A replicated vault with its primary on Garage and its secondary in a local directory: a
/// chunk corrupted, then deleted, in the bucket restores from the directory, and the bucket
/// gets the good copy back.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn a_garage_primary_heals_from_a_local_secondary() {
    let s3 = s3();
    let _server = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = dir.path().join("replica");
    std::fs::create_dir(&replica).expect("replica dir");
    let secondary = Store::local(&replica).expect("local secondary");
    let vault = Vault::init_replicated(s3.store("replicated"), secondary)
        .await
        .expect("init");
    let bs = block_size(64 << 10);
    let mut image = Image::create(dir.path().join("disk.img"), 1 << 20);
    for (i, kind) in [(0u64, 1u8), (5, 2), (9, 3)] {
        image.apply(Write {
            offset: i * (64 << 10),
            len: 64 << 10,
            kind,
        });
    }
    let point = crate::support::backup(&vault, "vm1", &[&image], bs)
        .await
        .expect("backup")
        .point;
    let map = vault
        .store()
        .get_map(&point.vm, &point.id, &point.disks[0].name, None)
        .await
        .expect("map");
    let hex = map.get(5).expect("a block of the map").to_hex();
    let key = object_store::path::Path::from(format!("chunks/{}/{hex}", &hex[..2]));
    let local = replica.join("chunks").join(&hex[..2]).join(&hex);
    let good = std::fs::read(&local).expect("the secondary has the chunk");
    let objects = vault.store().objects();

    objects
        .put(&key, b"garbage".to_vec().into())
        .await
        .expect("corrupt");
    let out = dir.path().join("out");
    let report = restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect("restore from the replica");
    assert_eq!(report.repairs.chunks, 1);
    assert_eq!(report.repairs.unhealed, 0);
    assert_eq!(
        std::fs::read(out.join("disk.img")).expect("image"),
        image.content
    );
    let healed = objects
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(
        healed.as_ref(),
        good.as_slice(),
        "the bucket has the good copy back"
    );

    objects.delete(&key).await.expect("delete");
    let out = dir.path().join("out2");
    let report = restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect("restore from the replica");
    assert_eq!(report.repairs.chunks, 1);
    assert!(objects.head(&key).await.is_ok(), "healed");
}

/// A request that times out is sent again, a read (GET) as well as a delete (a POST on S3,
/// which the HTTP client does not repeat by itself), until the retry budget is spent; a
/// server that never answers is bounded by the request timeout and the budget.
#[tokio::test(flavor = "multi_thread")]
async fn requests_that_time_out_are_retried_until_the_budget_is_spent() {
    // Accepts connections and reads requests, but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::clone(&connections);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(256) {
            let Ok(mut stream) = stream else { break };
            accepted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    let options = S3Options {
        request_timeout_secs: Some(1),
        retry_budget_secs: Some(3),
        ..loopback(port)
    };
    let store = Store::s3("bucket", "slow", &options).expect("store");

    let started = Instant::now();
    let err = Vault::open(store.clone()).await.expect_err("no answer");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    assert!(
        matches!(err, Error::Store(blockvault_store::Error::Backend { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("retry budget is 3s"), "{err}");
    let reads = connections.swap(0, Ordering::SeqCst);
    assert!(
        reads >= 2,
        "the GET that timed out was sent again: {reads} tries"
    );

    let started = Instant::now();
    let err = store
        .objects()
        .delete(&object_store::path::Path::from("leases/writer-x"))
        .await
        .expect_err("no answer");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    assert!(err.to_string().contains("retry budget is 3s"), "{err}");
    let deletes = connections.load(Ordering::SeqCst);
    assert!(
        deletes >= 2,
        "the delete that timed out was sent again: {deletes} tries"
    );
}

/// How long the outage test keeps the server down: a restart that takes its time (the
/// defect: 20 s down failed a backup after 4 s of retries).
const OUTAGE: Duration = Duration::from_secs(30);

/// Kills the Garage server the first time the backup reports progress, and starts it again
/// [`OUTAGE`] later.
struct Outage {
    config: PathBuf,
    pid_file: PathBuf,
    done: AtomicBool,
    restarted: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Outage {
    fn kill_and_restart(&self) {
        let pid = std::fs::read_to_string(&self.pid_file).expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status();
        assert!(status.expect("kill").success(), "kill garage");
        let config = self.config.clone();
        let pid_file = self.pid_file.clone();
        let restart = std::thread::spawn(move || {
            std::thread::sleep(OUTAGE);
            let log =
                std::fs::File::create(config.with_file_name("server-restarted.log")).expect("log");
            #[expect(
                clippy::zombie_processes,
                reason = "the restarted server outlives the test; scripts/garage.sh stops it by its pid file"
            )]
            let child = std::process::Command::new("garage")
                .arg("-c")
                .arg(&config)
                .arg("server")
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("restart garage");
            std::fs::write(&pid_file, child.id().to_string()).expect("pid");
        });
        *self.restarted.lock().expect("lock") = Some(restart);
    }
}

impl Progress for Outage {
    fn advance(&self, _bytes: u64) {
        if !self.done.swap(true, Ordering::SeqCst) {
            self.kill_and_restart();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn retries_ride_out_garage_killed_mid_backup_and_down_for_30s() {
    let s3 = s3();
    let (Some(config), Some(pid_file)) = (
        std::env::var_os("GARAGE_CONFIG"),
        std::env::var_os("GARAGE_PID_FILE"),
    ) else {
        panic!("GARAGE_CONFIG and GARAGE_PID_FILE are needed to stop and restart the server");
    };
    let _server = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::init(s3.store("outage")).await.expect("init");
    let mut image = Image::create(dir.path().join("disk.img"), 32 << 20);
    for i in 0..32u64 {
        image.apply(Write {
            offset: i << 20,
            len: 1 << 20,
            kind: 2 + (i % 3) as u8 * 2,
        });
    }
    let outage = Arc::new(Outage {
        config: config.into(),
        pid_file: pid_file.into(),
        done: AtomicBool::new(false),
        restarted: std::sync::Mutex::new(None),
    });
    let request = BackupRequest {
        vm: vm("vm1"),
        disks: vec![image.path.clone().into()],
        block_size: Some(block_size(1 << 20)),
        consistency: blockvault_core::Consistency::CrashConsistent,
        capture: None,
        options: TransferOptions { concurrency: 4 },
        time: None,
        retain_until: None,
        id: None,
        vault: None,
    };
    let started = Instant::now();
    let report = vault.backup(&request, outage.clone()).await;
    let took = started.elapsed();
    let restart = outage.restarted.lock().expect("lock").take();
    if let Some(restart) = restart {
        restart.join().expect("the server was restarted");
    }
    let report = report.expect("retries ride out the outage");
    assert!(
        outage.done.load(Ordering::SeqCst),
        "the server was killed during the backup"
    );
    assert!(
        took >= OUTAGE,
        "the backup finished before the server was back: {took:?}"
    );
    eprintln!("the backup took {took:.1?} across a {OUTAGE:?} outage");
    let out = dir.path().join("out");
    restore(
        &vault,
        "vm1",
        PointSelector::Id(report.point.id.to_string()),
        &out,
    )
    .await
    .expect("restore");
    assert!(std::fs::read(out.join("disk.img")).expect("read") == image.content);
}
