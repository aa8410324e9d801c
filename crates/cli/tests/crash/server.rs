//! The S3 side: the Garage server that `scripts/garage.sh` started (killed and started again
//! by server faults), and the vault's leases, read and removed through the store crate (the
//! test has no other S3 client).

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use blockvault_store::{S3Options, Store};

/// How long a restarted server may take to answer.
const READY: Duration = Duration::from_secs(60);

/// The S3 location for a world's vault. The S3 trials are `#[ignore]`d, run by
/// `scripts/test.sh` (`--include-ignored`): without the server they fail, saying why.
pub fn s3_location(name: &str) -> Option<String> {
    match std::env::var("BLOCKVAULT_TEST_S3_BUCKET") {
        Ok(bucket) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            Some(format!("s3://{bucket}/crash/{name}-{nanos}"))
        }
        Err(_) => {
            panic!("the S3 crash trials need the Garage server that scripts/test.sh starts")
        }
    }
}

/// The vault's objects on S3, as the store crate sees them (retries kept short: the test
/// wants to know the server answers, not to ride out an outage).
#[derive(Debug)]
pub struct S3Objects {
    store: Store,
    runtime: tokio::runtime::Runtime,
}

impl S3Objects {
    pub fn open(location: &str) -> S3Objects {
        let rest = location.strip_prefix("s3://").expect("an s3:// location");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let options = S3Options {
            max_retries: Some(2),
            request_timeout_secs: Some(10),
            ..S3Options::from_env().expect("S3 settings")
        };
        let store = Store::s3(bucket, prefix, &options).expect("open the S3 store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the S3 store");
        S3Objects { store, runtime }
    }

    /// The keys of the leases in the vault.
    pub fn leases(&self) -> Result<Vec<String>, String> {
        self.runtime
            .block_on(self.store.list_leases())
            .map(|leases| leases.into_iter().map(|l| l.key).collect())
            .map_err(|e| e.to_string())
    }

    /// Removes every lease: what their expiry (5 minutes after their holder died) would let
    /// the next writer or sweep do. Only ever called with no blockvault process running.
    pub fn remove_leases(&self) {
        for key in self.leases().expect("list the leases") {
            self.runtime
                .block_on(self.store.delete_lease_key(&key))
                .unwrap_or_else(|e| panic!("remove the dead lease {key}: {e}"));
        }
    }

    /// Waits until the server answers a listing (after a restart).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + READY;
        loop {
            match self.leases() {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("the S3 server did not answer within {READY:?} of its restart: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// The Garage process behind `AWS_ENDPOINT_URL`, as `scripts/garage.sh` describes it
/// (`GARAGE_CONFIG`, `GARAGE_PID_FILE`).
#[derive(Debug)]
pub struct Server {
    config: PathBuf,
    pid_file: PathBuf,
    endpoint: String,
}

impl Server {
    /// The server, when the environment says how to restart it.
    pub fn from_env() -> Option<Server> {
        let config = std::env::var_os("GARAGE_CONFIG")?;
        let pid_file = std::env::var_os("GARAGE_PID_FILE")?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok()?;
        Some(Server {
            config: config.into(),
            pid_file: pid_file.into(),
            endpoint,
        })
    }

    fn pid(&self) -> String {
        std::fs::read_to_string(&self.pid_file)
            .expect("read the Garage pid file")
            .trim()
            .to_owned()
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&self) {
        let pid = self.pid();
        let status = Command::new("kill").args(["-9", &pid]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "kill -9 the Garage server (pid {pid})"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the server again, detached (`scripts/garage.sh stop` stops it by its pid file),
    /// and waits until its S3 port takes connections.
    pub fn start(&self) {
        let garage = garage_binary();
        let log = self.config.with_file_name("server-restarted.log");
        let output = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -c "$1" server >>"$2" 2>&1 & echo $!"#)
            .arg(&garage)
            .arg(&self.config)
            .arg(&log)
            .output()
            .expect("start Garage again");
        let pid = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success() && !pid.is_empty(),
            "restart Garage ({}): {output:?}",
            garage.display()
        );
        std::fs::write(&self.pid_file, &pid).expect("write the Garage pid file");
        let address = self
            .endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        let deadline = Instant::now() + READY;
        loop {
            let up = address
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Garage did not listen on {address} within {READY:?} of its restart; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `garage` from PATH, else where `scripts/garage.sh install` puts it.
fn garage_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("garage"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo/bin/garage")
    })
}
