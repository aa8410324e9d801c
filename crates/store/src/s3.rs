//! S3-compatible object storage: MinIO, Garage, Ceph RGW, AWS S3, through
//! `object_store::aws` with the same code.

use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use object_store::ClientOptions;
use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use serde::Deserialize;

use crate::endpoint::{check_endpoint, check_key_id, check_region};
use crate::retry::{DEFAULT_BUDGET, RetryBudget};
use crate::retrying::Retrying;
use crate::{Error, Result, Store};

/// A secret that never shows itself in `Debug`, `Display` or logs.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to reach an S3-compatible store. Read from `AWS_*` environment variables
/// ([`S3Options::from_env`]) and/or a TOML file ([`S3Options::load`]); the environment wins.
///
/// ```toml
/// endpoint = "https://minio.example.net:9000"
/// region = "us-east-1"
/// access-key-id = "..."
/// secret-access-key = "..."
/// allow-http = false
/// retry-budget-secs = 90
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Options {
    /// The endpoint URL; AWS S3 when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Plain HTTP, for loopback test servers only.
    pub allow_http: bool,
    /// Timeout of one request, in seconds (default 60).
    pub request_timeout_secs: Option<u64>,
    /// Timeout to connect, in seconds (default 5).
    pub connect_timeout_secs: Option<u64>,
    /// How long a request that fails in transit (no connection, a timeout, a dropped
    /// connection) or with a 5xx answer is retried, in seconds (default 90: enough to ride out
    /// a restart of the server). Retries back off exponentially with jitter, from 100 ms to
    /// at most 5 s apart. Also `BLOCKVAULT_S3_RETRY_BUDGET_SECS`.
    pub retry_budget_secs: Option<u64>,
    /// At most this many retries of one request, whatever the budget leaves (no limit by
    /// default: the budget is what stops them).
    pub max_retries: Option<usize>,
}

/// A check of one setting's value: why it is unusable.
type Check = fn(&str) -> std::result::Result<(), String>;

/// The environment variable that sets [`S3Options::retry_budget_secs`].
const RETRY_BUDGET_VAR: &str = "BLOCKVAULT_S3_RETRY_BUDGET_SECS";

impl S3Options {
    /// Options from `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_ALLOW_HTTP` (`true`), and `BLOCKVAULT_S3_RETRY_BUDGET_SECS`. Fails on a budget
    /// that is not a whole number of seconds.
    pub fn from_env() -> Result<S3Options> {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let retry_budget_secs = var(&[RETRY_BUDGET_VAR])
            .map(|v| seconds(RETRY_BUDGET_VAR, &v))
            .transpose()?;
        // Each setting checked under the name of the variable it came from.
        let checked = |names: &[&str], check: Check| -> Result<Option<String>> {
            let Some((name, value)) = names.iter().find_map(|n| {
                std::env::var(n)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (*n, v))
            }) else {
                return Ok(None);
            };
            check(&value).map_err(|reason| Error::Setting {
                name: name.to_owned(),
                reason,
            })?;
            Ok(Some(value))
        };
        Ok(S3Options {
            endpoint: checked(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT"], check_endpoint)?,
            region: checked(&["AWS_REGION", "AWS_DEFAULT_REGION"], check_region)?,
            access_key_id: checked(&["AWS_ACCESS_KEY_ID"], check_key_id)?,
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY"]).map(Secret),
            allow_http: var(&["AWS_ALLOW_HTTP"]).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            retry_budget_secs,
            ..S3Options::default()
        })
    }

    /// The first of the endpoint, region and access key id that cannot go into a request:
    /// its setting's name and why (`object_store` panics on some of them).
    fn malformed(&self) -> Option<(&'static str, String)> {
        let fields: [(&'static str, Option<&String>, Check); 3] = [
            ("endpoint", self.endpoint.as_ref(), check_endpoint),
            ("region", self.region.as_ref(), check_region),
            ("access-key-id", self.access_key_id.as_ref(), check_key_id),
        ];
        fields.into_iter().find_map(|(name, value, check)| {
            value
                .and_then(|v| check(v).err())
                .map(|reason| (name, reason))
        })
    }

    /// How long and how often requests are retried.
    fn retry_budget(&self) -> RetryBudget {
        RetryBudget {
            total: self
                .retry_budget_secs
                .map_or(DEFAULT_BUDGET, Duration::from_secs),
            max_retries: self.max_retries,
        }
    }

    /// Options from a TOML file, which must not be readable by group or others (it holds a
    /// secret). A missing file gives empty options.
    pub fn load(path: &FsPath) -> Result<S3Options> {
        use std::os::unix::fs::PermissionsExt;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(S3Options::default()),
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mode = std::fs::metadata(path)
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::Config {
                path: path.to_owned(),
                reason: format!(
                    "it is readable by others (mode {:o}); it holds a secret: chmod 600 it",
                    mode & 0o777
                ),
            });
        }
        let options: S3Options = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: e.message().to_owned(),
        })?;
        match options.malformed() {
            Some((name, reason)) => Err(Error::Config {
                path: path.to_owned(),
                reason: format!("{name} {reason}"),
            }),
            None => Ok(options),
        }
    }

    /// These options with every field that `over` sets taken from `over`.
    pub fn overridden_by(self, over: S3Options) -> S3Options {
        S3Options {
            endpoint: over.endpoint.or(self.endpoint),
            region: over.region.or(self.region),
            access_key_id: over.access_key_id.or(self.access_key_id),
            secret_access_key: over.secret_access_key.or(self.secret_access_key),
            allow_http: over.allow_http || self.allow_http,
            request_timeout_secs: over.request_timeout_secs.or(self.request_timeout_secs),
            connect_timeout_secs: over.connect_timeout_secs.or(self.connect_timeout_secs),
            retry_budget_secs: over.retry_budget_secs.or(self.retry_budget_secs),
            max_retries: over.max_retries.or(self.max_retries),
        }
    }
}

/// The value `value` of the setting `name`, a whole number of seconds.
fn seconds(name: &str, value: &str) -> Result<u64> {
    value.trim().parse::<u64>().map_err(|_| Error::Setting {
        name: name.to_owned(),
        reason: format!("{value:?} is not a whole number of seconds"),
    })
}

impl Store {
    /// A store on bucket `bucket` under `prefix`, reached with `options`.
    pub fn s3(bucket: &str, prefix: &str, options: &S3Options) -> Result<Store> {
        let location = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let invalid = |reason: String| Error::InvalidLocation {
            location: location.clone(),
            reason,
        };
        crate::location::check_bucket(bucket).map_err(&invalid)?;
        // Checked before anything is built: `object_store` unwraps what it parses of these.
        if let Some((name, reason)) = options.malformed() {
            return Err(Error::Setting {
                name: name.to_owned(),
                reason,
            });
        }
        let (Some(key), Some(secret)) = (&options.access_key_id, &options.secret_access_key) else {
            return Err(invalid(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write \
                 access-key-id and secret-access-key to the S3 config file"
                    .to_owned(),
            ));
        };
        if let Some(endpoint) = &options.endpoint
            && endpoint.starts_with("http://")
            && !options.allow_http
        {
            return Err(invalid(format!(
                "endpoint {endpoint} is plain HTTP; allow it explicitly (AWS_ALLOW_HTTP=true \
                 or allow-http = true), for loopback or trusted networks only"
            )));
        }
        let client = ClientOptions::new()
            .with_timeout(Duration::from_secs(
                options.request_timeout_secs.unwrap_or(60),
            ))
            .with_connect_timeout(Duration::from_secs(
                options.connect_timeout_secs.unwrap_or(5),
            ))
            .with_allow_http(options.allow_http);
        let budget = options.retry_budget();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(options.region.as_deref().unwrap_or("us-east-1"))
            .with_access_key_id(key)
            .with_secret_access_key(secret.expose())
            .with_client_options(client)
            .with_retry(budget.object_store_config());
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let s3 = builder.build().map_err(|e| invalid(e.to_string()))?;
        let objects: Arc<dyn object_store::ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Store::new(
            Arc::new(Retrying::new(objects, budget)),
            location,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let options = S3Options {
            secret_access_key: Some(Secret::new("hunter2-very-secret")),
            ..S3Options::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }

    #[test]
    fn plain_http_needs_consent_and_credentials_are_required() {
        let mut options = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some(Secret::new("s3cr3t")),
            ..S3Options::default()
        };
        let err = Store::s3("bucket", "", &options).expect_err("http");
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        options.allow_http = true;
        assert!(Store::s3("bucket", "p", &options).is_ok());
        options.secret_access_key = None;
        let err = Store::s3("bucket", "", &options).expect_err("no secret");
        assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    }

    /// Each malformed endpoint panicked `object_store` on the first request (exit 101): now
    /// the store is not built, the config file not read, and the error names the setting.
    #[test]
    fn malformed_endpoints_are_refused_before_any_request() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s3.toml");
        for bad in [
            "127.0.0.1:3900",
            "http://127.0.0.1:99999",
            "http://[::1",
            "",
            "ftp://host",
            "http://127.0.0.1:3900/bucket",
            "http://127.0.0.1:3900?x=1",
            " http://127.0.0.1:3900",
            "http://127.0.0.1 :3900",
        ] {
            let options = S3Options {
                endpoint: Some(bad.to_owned()),
                access_key_id: Some("GK1".into()),
                secret_access_key: Some(Secret::new("s3cr3t")),
                allow_http: true,
                ..S3Options::default()
            };
            let err = Store::s3("bucket", "p", &options).expect_err(bad);
            assert!(matches!(err, Error::Setting { .. }), "{bad:?}: {err}");
            assert_eq!(err.kind(), blockvault_core::ErrorKind::Usage);
            let text = err.to_string();
            assert!(
                text.starts_with("S3 setting endpoint: ")
                    && text.contains("http://HOST:PORT or https://HOST[:PORT]"),
                "{bad:?}: {text}"
            );
            std::fs::write(&path, format!("endpoint = {bad:?}\n")).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let err = S3Options::load(&path).expect_err(bad);
            assert!(
                matches!(err, Error::Config { .. })
                    && err.to_string().contains(": endpoint ")
                    && err.to_string().contains("https://HOST[:PORT]"),
                "{bad:?}: {err}"
            );
        }
        let options = S3Options {
            region: Some("us east".into()),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some(Secret::new("s3cr3t")),
            ..S3Options::default()
        };
        let err = Store::s3("bucket", "", &options).expect_err("region");
        assert!(err.to_string().contains("S3 setting region"), "{err}");
        let err = Store::s3("Bad_Bucket", "", &options).expect_err("bucket");
        assert!(matches!(err, Error::InvalidLocation { .. }), "{err}");
    }

    /// Endpoints of the accepted forms reach the HTTP client and fail as requests do (nothing
    /// listens), never with a panic.
    #[tokio::test]
    async fn accepted_endpoints_fail_as_requests_not_as_panics() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        for endpoint in [
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ] {
            let options = S3Options {
                endpoint: Some(endpoint.clone()),
                access_key_id: Some("GK1".into()),
                secret_access_key: Some(Secret::new("s3cr3t")),
                allow_http: true,
                retry_budget_secs: Some(0),
                max_retries: Some(0),
                ..S3Options::default()
            };
            let store = Store::s3("bucket", "p", &options).expect(&endpoint);
            let err = store.config().await.expect_err(&endpoint);
            assert!(matches!(err, Error::Backend { .. }), "{endpoint}: {err}");
        }
    }

    #[test]
    fn config_files_must_be_private_and_well_formed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s3.toml");
        assert_eq!(
            S3Options::load(&path).expect("missing is empty"),
            S3Options::default()
        );
        std::fs::write(
            &path,
            "endpoint = \"http://127.0.0.1:3900\"\nsecret-access-key = \"zz-top\"\n",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = S3Options::load(&path).expect_err("world readable");
        assert!(
            err.to_string().contains("chmod 600") && !err.to_string().contains("zz-top"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let options = S3Options::load(&path).expect("load");
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        std::fs::write(&path, "endpoint = 1\nbogus = true\n").expect("write");
        assert!(matches!(S3Options::load(&path), Err(Error::Config { .. })));
        let env = S3Options {
            region: Some("garage".into()),
            ..S3Options::default()
        };
        let merged = options.overridden_by(env);
        assert_eq!(merged.region.as_deref(), Some("garage"));
    }

    #[test]
    fn the_retry_budget_is_a_setting_of_the_file_and_the_environment() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(S3Options::default().retry_budget().total, DEFAULT_BUDGET);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s3.toml");
        std::fs::write(&path, "retry-budget-secs = 300\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let file = S3Options::load(&path).expect("load");
        assert_eq!(file.retry_budget().total, Duration::from_secs(300));
        assert_eq!(file.retry_budget().max_retries, None);
        let env = S3Options {
            retry_budget_secs: Some(seconds(RETRY_BUDGET_VAR, " 20 ").expect("20")),
            ..S3Options::default()
        };
        assert_eq!(
            file.overridden_by(env).retry_budget().total,
            Duration::from_secs(20),
            "the environment wins"
        );
        let err = seconds(RETRY_BUDGET_VAR, "2m").expect_err("not seconds");
        assert_eq!(
            err.to_string(),
            "S3 setting BLOCKVAULT_S3_RETRY_BUDGET_SECS: \"2m\" is not a whole number of seconds"
        );
        std::fs::write(&path, "retry-budget-secs = -1\n").expect("write");
        assert!(matches!(S3Options::load(&path), Err(Error::Config { .. })));
    }
}
