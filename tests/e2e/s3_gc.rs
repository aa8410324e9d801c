//! Garbage collection on a real S3 server (the Garage of `scripts/test.sh`, which ignores
//! conditional writes): the lease protocol alone keeps a backup that reuses the chunks of a
//! point deleted meanwhile safe, and the collection deletes exactly what no point names. The
//! same scenario on a local directory is in `gc.rs`.

use blockvault_vault::Vault;

use crate::gc::gc_during_a_backup_reusing_a_deleted_points_chunks;
use crate::s3::{SERVER, s3};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
async fn gc_on_garage_waits_for_a_backup_reusing_a_deleted_points_chunks() {
    let s3 = s3();
    let _server = SERVER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::init(s3.store("gc")).await.expect("init");
    gc_during_a_backup_reusing_a_deleted_points_chunks(&vault, dir.path()).await;
}
