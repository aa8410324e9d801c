//! The conformance suite run on every backend: plain, and encrypted (a keyed codec, a config
//! whose `encryption` is set).

use blockvault_core::{ChunkCodec, MasterKey};

use crate::Store;

/// `store` with a fresh key's codec: every object but chunks and the config sealed.
fn encrypted(store: Store) -> (Store, MasterKey) {
    let master = MasterKey::generate();
    (store.with_codec(ChunkCodec::keyed(&master)), master)
}

#[tokio::test]
async fn in_memory_store_conforms() {
    super::run(&Store::in_memory()).await;
}

#[tokio::test]
async fn local_directory_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    super::run(&Store::local(dir.path()).expect("store")).await;
}

#[tokio::test]
async fn encrypted_in_memory_store_conforms() {
    let (store, master) = encrypted(Store::in_memory());
    super::run_encrypted(&store, &master).await;
}

#[tokio::test]
async fn encrypted_local_directory_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, master) = encrypted(Store::local(dir.path()).expect("store"));
    super::run_encrypted(&store, &master).await;
}

#[tokio::test]
async fn encrypted_replicated_directory_store_conforms() {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let store = Store::local(a.path())
        .expect("primary")
        .replicated(Store::local(b.path()).expect("secondary"));
    let (store, master) = encrypted(store);
    super::run_encrypted(&store, &master).await;
    assert_eq!(
        store.repairs(),
        crate::Repairs::default(),
        "nothing to heal"
    );
}

#[tokio::test]
async fn replicated_directory_store_conforms() {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let store = Store::local(a.path())
        .expect("primary")
        .replicated(Store::local(b.path()).expect("secondary"));
    super::run(&store).await;
    assert_eq!(
        store.repairs(),
        crate::Repairs::default(),
        "nothing to heal"
    );
}

#[tokio::test]
async fn replicated_in_memory_store_conforms() {
    let store = Store::in_memory().replicated(Store::in_memory());
    super::run(&store).await;
}

/// The server `scripts/test.sh` starts (`scripts/garage.sh`), described in the
/// environment; a prefix no other test (or earlier run) uses.
fn garage(name: &str) -> Store {
    let Ok(bucket) = std::env::var("BLOCKVAULT_TEST_S3_BUCKET") else {
        panic!(
            "this test needs the Garage server that scripts/test.sh starts \
             (BLOCKVAULT_TEST_S3_BUCKET is not set): run scripts/test.sh"
        );
    };
    let options = crate::S3Options::from_env().expect("S3 settings in the environment");
    let prefix = format!(
        "test/store-{name}-{}",
        jiff::Timestamp::now().as_nanosecond()
    );
    Store::s3(&bucket, &prefix, &options).expect("s3 store")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn s3_store_conforms_on_garage() {
    super::run(&garage("conformance")).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn encrypted_s3_store_conforms_on_garage() {
    let (store, master) = encrypted(garage("encrypted"));
    super::run_encrypted(&store, &master).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn replicated_s3_and_directory_store_conforms_on_garage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = garage("replicated").replicated(Store::local(dir.path()).expect("dir"));
    super::run(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn encrypted_replicated_s3_and_directory_store_conforms_on_garage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = garage("encrypted-replicated").replicated(Store::local(dir.path()).expect("dir"));
    let (store, master) = encrypted(store);
    super::run_encrypted(&store, &master).await;
}

#[tokio::test]
async fn local_store_refuses_missing_dirs_files_and_non_empty_dirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Store::local(dir.path().join("nope")).expect_err("missing");
    assert!(matches!(err, crate::Error::NotAVault { .. }), "{err}");
    std::fs::write(dir.path().join("file"), b"x").expect("write");
    let err = Store::local(dir.path().join("file")).expect_err("file");
    assert!(matches!(err, crate::Error::NotAVault { .. }), "{err}");
    let store = Store::local(dir.path()).expect("store");
    let config = blockvault_core::VaultConfig {
        id: "x".into(),
        created: jiff::Timestamp::UNIX_EPOCH,
        default_block_size: blockvault_core::BlockSize::DEFAULT,
        redundancy: Default::default(),
        replica_of: None,
        encryption: None,
    };
    let err = store.init(&config).await.expect_err("not empty");
    assert!(matches!(err, crate::Error::NotEmpty { .. }), "{err}");
    assert!(!dir.path().join("vault.config").exists(), "nothing written");
}
