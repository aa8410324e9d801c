//! The vault on a real S3 server: the Garage that `scripts/test.sh` starts on 127.0.0.1 and
//! describes in the environment (`AWS_*`, `BLOCKVAULT_TEST_S3_BUCKET`, `GARAGE_CONFIG`,
//! `GARAGE_PID_FILE`). In CI these tests never skip: without a server they fail, saying why.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blockvault_store::{S3Options, Secret, Store};
use blockvault_vault::{BackupRequest, Error, PointSelector, Progress, TransferOptions, Vault};
use object_store::ObjectStoreExt;

use crate::support::{Image, Write, block_size, files_in, restore, vm};

/// One test at a time talks to the server: the kill-and-restart test takes it down.
pub(crate) static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) struct S3 {
    bucket: String,
    options: S3Options,
}

pub(crate) fn s3() -> Option<S3> {
    match std::env::var("BLOCKVAULT_TEST_S3_BUCKET") {
        Ok(bucket) => Some(S3 {
            bucket,
            options: S3Options::from_env(),
        }),
        Err(_) if std::env::var_os("CI").is_some() => panic!(
            "the S3 tests need the Garage server that scripts/test.sh starts \
             (BLOCKVAULT_TEST_S3_BUCKET is not set)"
        ),
        Err(_) => {
            eprintln!("skipped: no S3 server in the environment; run scripts/test.sh");
            None
        }
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
async fn the_chunk_store_conforms_on_garage() {
    let Some(s3) = s3() else { return };
    let _server = SERVER.lock().await;
    blockvault_store::conformance::run(&s3.store("conformance")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_to_garage_restore_byte_for_byte() {
    let Some(s3) = s3() else { return };
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

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_fails_quickly_and_clearly() {
    let Some(s3) = s3() else { return };
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // The listener is dropped: nothing listens on `port` now.
    let options = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        max_retries: Some(2),
        ..s3.options.clone()
    };
    let started = Instant::now();
    let store = Store::s3(&s3.bucket, "dead", &options).expect("store");
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

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_refused_without_echoing_the_secret() {
    let Some(s3) = s3() else { return };
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
async fn a_missing_bucket_is_named() {
    let Some(s3) = s3() else { return };
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
async fn a_chunk_deleted_or_corrupted_in_the_bucket_is_named_at_restore() {
    let Some(s3) = s3() else { return };
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
        matches!(&err, Error::Block { offset, source, .. }
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
        matches!(&err, Error::Block { offset, source, .. }
            if *offset == 5 * (64 << 10) && source.is_missing()),
        "{err}"
    );
    assert!(files_in(&out).is_empty());
}

/// A replicated vault with its primary on Garage and its secondary in a local directory: a
/// chunk corrupted, then deleted, in the bucket restores from the directory, and the bucket
/// gets the good copy back.
#[tokio::test(flavor = "multi_thread")]
async fn a_garage_primary_heals_from_a_local_secondary() {
    let Some(s3) = s3() else { return };
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

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_is_bounded_by_timeouts() {
    let Some(s3) = s3() else { return };
    // Accepts connections and reads requests, but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    let options = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        request_timeout_secs: Some(2),
        max_retries: Some(1),
        ..s3.options.clone()
    };
    let started = Instant::now();
    let store = Store::s3(&s3.bucket, "slow", &options).expect("store");
    let err = Vault::open(store).await.expect_err("no answer");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "gave up before the timeout: {took:?}"
    );
    assert!(
        matches!(err, Error::Store(blockvault_store::Error::Backend { .. })),
        "{err}"
    );
}

/// Kills the Garage server the first time the backup reports progress, and starts it again a
/// second later.
struct Outage {
    config: PathBuf,
    pid_file: PathBuf,
    done: AtomicBool,
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
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
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
async fn a_server_killed_mid_transfer_and_restarted_still_gets_a_whole_point() {
    let Some(s3) = s3() else { return };
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
    });
    let request = BackupRequest {
        vm: vm("vm1"),
        disks: vec![image.path.clone()],
        block_size: Some(block_size(1 << 20)),
        consistency: blockvault_core::Consistency::CrashConsistent,
        options: TransferOptions { concurrency: 4 },
        time: None,
        retain_until: None,
        vault: None,
    };
    let report = vault
        .backup(&request, outage.clone())
        .await
        .expect("retries ride out the outage");
    assert!(
        outage.done.load(Ordering::SeqCst),
        "the server was killed during the backup"
    );
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
