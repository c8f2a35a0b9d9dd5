//! The agent config: where state lives, which region applies, what product
//! this is, how to collect and where to upload.
//!
//! Loading never binds a socket or creates a directory: it only reads and
//! validates, collecting every problem with its line and column. Relative
//! paths are resolved against the directory of the config file, so a config
//! and its consent file can travel together. Unknown keys are errors: a typo
//! in a file that controls what is sent must never be silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::catalogue::{BuiltIn, Catalogue, Region};
pub use crate::clock::HumanDuration;
use crate::collect::{CollectConfig, ProductConfig};
use crate::consent::{Jurisdiction, OptOut, Policy, Registry};
use crate::document::{Document, Problems, ReadError};
use crate::gate;
use crate::store::StoreConfig;
use crate::upload::UploadConfig;

/// Where the config is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/consentry/consentry.toml";

/// The documented default config, shipped as `config/consentry.toml`.
pub const EMBEDDED_EXAMPLE: &str = include_str!("../config/consentry.toml");

mod validate;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_region")]
    region: Region,
    #[serde(default)]
    global_privacy_control: bool,
    state_dir: PathBuf,
    runtime_dir: PathBuf,
    consent_file: PathBuf,
    #[serde(default)]
    catalogue: Option<PathBuf>,
    #[serde(default)]
    policy_file: Option<PathBuf>,
    #[serde(default)]
    admin_group: Option<String>,
    product: ProductConfig,
    #[serde(default)]
    collect: CollectConfig,
    #[serde(default)]
    store: Option<Spanned<StoreConfig>>,
    upload: Spanned<UploadConfig>,
}

fn default_region() -> Region {
    Region::Global
}

/// A validated agent config with absolute paths.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub region: Region,
    /// The Global Privacy Control opt-out signal, set by an administrator.
    pub global_privacy_control: bool,
    /// Durable queue, installation id, audit trail.
    pub state_dir: PathBuf,
    /// Control socket.
    pub runtime_dir: PathBuf,
    pub consent_file: PathBuf,
    /// A catalogue file; `None` means the built-in catalogue `builtin`.
    pub catalogue_file: Option<PathBuf>,
    /// The built-in catalogue, when no file is named (`catalogue = "kes"`;
    /// the default is `kis`).
    pub builtin: BuiltIn,
    /// The administrator policy (switches off, never on); `None`: no policy.
    pub policy_file: Option<PathBuf>,
    /// A group (name or gid) whose members may change what the daemon does
    /// (`consent grant|revoke|decline`, `flush`) besides root and the
    /// daemon's user.
    pub admin_group: Option<String>,
    pub product: ProductConfig,
    pub collect: CollectConfig,
    /// The queue's bounds and the audit retention.
    pub store: StoreConfig,
    pub upload: UploadConfig,
}

/// What `catalogue = "…"` names: a built-in catalogue by its id, or a file
/// (a value with a `/`, or ending in `.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogueChoice {
    BuiltIn(BuiltIn),
    File(PathBuf),
}

impl CatalogueChoice {
    pub fn of(value: &Path) -> Option<Self> {
        let text = value.to_string_lossy();
        if let Some(builtin) = BuiltIn::from_id(&text) {
            return Some(Self::BuiltIn(builtin));
        }
        (text.contains('/') || text.ends_with(".toml")).then(|| Self::File(value.to_path_buf()))
    }
}

/// Why the config, or what it points to, cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let path = absolute(path);
        let document = Document::read(&path)?;
        Ok(Self::from_document(&document, &path)?)
    }

    /// Validates config text as if it had been read from `path`.
    pub fn from_document(document: &Document, path: &Path) -> Result<Self, ReadError> {
        let raw: RawConfig = document.parse()?;
        let problems = validate::problems(document, &raw);
        if !problems.is_empty() {
            return Err(Problems(problems).into());
        }
        let upload = raw.upload.into_inner();
        let store = raw.store.map(Spanned::into_inner).unwrap_or_default();
        let base = path.parent().unwrap_or(Path::new("/"));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            region: raw.region,
            global_privacy_control: raw.global_privacy_control,
            state_dir: resolve(&raw.state_dir),
            runtime_dir: resolve(&raw.runtime_dir),
            consent_file: resolve(&raw.consent_file),
            catalogue_file: match raw.catalogue.as_deref().and_then(CatalogueChoice::of) {
                Some(CatalogueChoice::File(path)) => Some(resolve(&path)),
                _ => None,
            },
            builtin: match raw.catalogue.as_deref().and_then(CatalogueChoice::of) {
                Some(CatalogueChoice::BuiltIn(builtin)) => builtin,
                _ => BuiltIn::default(),
            },
            policy_file: raw.policy_file.as_deref().map(resolve),
            admin_group: raw.admin_group,
            product: raw.product,
            collect: raw.collect,
            store,
            upload: UploadConfig {
                ca_file: upload.ca_file.as_deref().map(resolve),
                server_certificate: upload.server_certificate.as_deref().map(resolve),
                token_file: upload.token_file.as_deref().map(resolve),
                ..upload
            },
        })
    }

    /// The catalogue this config names: a file, or a built-in one.
    pub fn load_catalogue(&self) -> Result<Catalogue, ReadError> {
        match &self.catalogue_file {
            Some(path) => Catalogue::from_file(path),
            None => Ok(Catalogue::builtin(self.builtin)),
        }
    }

    /// The region, the opt-out signals and the administrator policy in
    /// force, read now: `global_privacy_control` from this config,
    /// `DO_NOT_TRACK=1` from the environment, the policy file afresh (an
    /// unusable one holds everything).
    pub fn jurisdiction(&self, catalogue: &Catalogue) -> Jurisdiction {
        let do_not_track = std::env::var("DO_NOT_TRACK").is_ok_and(|v| v.trim() == "1");
        Jurisdiction {
            region: self.region,
            opt_out: OptOut {
                do_not_track,
                global_privacy_control: self.global_privacy_control,
            },
            policy: Policy::load(self.policy_file.as_deref(), catalogue),
        }
    }

    /// The consent decisions as of now: the consent file evaluated in this
    /// config's jurisdiction (region, opt-out signals, policy).
    pub fn evaluate_consent(&self, catalogue: &Catalogue) -> Registry {
        gate::evaluate(&self.consent_file, self.jurisdiction(catalogue), catalogue)
    }

    /// The admin group's gid (`None`: no admin group), or why it cannot
    /// be found.
    pub fn admin_gid(&self) -> Result<Option<u32>, String> {
        let Some(group) = self.admin_group.as_deref() else {
            return Ok(None);
        };
        if let Ok(gid) = group.parse::<u32>() {
            return Ok(Some(gid));
        }
        match nix::unistd::Group::from_name(group) {
            Ok(Some(found)) => Ok(Some(found.gid.as_raw())),
            Ok(None) => Err(format!(
                "admin_group `{group}` is not a group on this machine (see /etc/group); create it or give its gid"
            )),
            Err(err) => Err(format!("cannot look up admin_group `{group}`: {err}")),
        }
    }

    /// The control socket inside `runtime_dir`.
    pub fn control_socket(&self) -> PathBuf {
        self.runtime_dir.join("control.sock")
    }

    /// The ingest socket inside `runtime_dir`.
    pub fn ingest_socket(&self) -> PathBuf {
        self.runtime_dir.join("ingest.sock")
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Origin;
    use std::time::Duration;

    fn load(text: &str) -> Result<Config, String> {
        let path = Path::new("/etc/consentry/consentry.toml");
        let document = Document {
            origin: Origin::File(path.into()),
            text: text.into(),
        };
        Config::from_document(&document, path).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
state_dir = "state"
runtime_dir = "/run/consentry"
consent_file = "consent.toml"
[product]
id = "ksec"
version = "12.1.0.505"
[upload]
endpoint = "https://telemetry.example.com/v1/batches"
"#;

    #[test]
    fn shipped_config_is_valid() {
        let config = load(EMBEDDED_EXAMPLE).unwrap();
        assert_eq!(config.region, Region::Global);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.state_dir, Path::new("/etc/consentry/state"));
        assert_eq!(
            config.consent_file,
            Path::new("/etc/consentry/consent.toml")
        );
        assert_eq!(config.runtime_dir, Path::new("/run/consentry"));

        let tls = load(&MINIMAL.replace(
            "[upload]",
            "[upload]\nserver_certificate = \"server.pem\"\ntoken_file = \"/secret/token\"",
        ))
        .unwrap();
        assert_eq!(
            tls.upload.server_certificate.as_deref(),
            Some(Path::new("/etc/consentry/server.pem"))
        );
        assert_eq!(
            tls.upload.token_file.as_deref(),
            Some(Path::new("/secret/token"))
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_a_place() {
        let err = load(&format!("regoin = \"eu\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.starts_with("/etc/consentry/consentry.toml:1:1"),
            "{err}"
        );
        assert!(err.contains("regoin"), "{err}");
    }

    #[test]
    fn unknown_region_is_refused() {
        let err = load(&format!("region = \"mars\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.contains("mars") || err.contains("unknown variant"),
            "{err}"
        );
    }

    #[test]
    fn compression_is_zstd_unless_gzip_is_asked_and_nothing_else_is_taken() {
        assert_eq!(
            load(MINIMAL).unwrap().upload.compression,
            crate::upload::compression::Compression::Zstd
        );
        let gzip = load(&MINIMAL.replace("[upload]", "[upload]\ncompression = \"gzip\"")).unwrap();
        assert_eq!(
            gzip.upload.compression,
            crate::upload::compression::Compression::Gzip
        );
        let err = load(&MINIMAL.replace("[upload]", "[upload]\ncompression = \"br\"")).unwrap_err();
        assert!(err.contains("consentry.toml:9:15:"), "{err}");
        assert!(err.contains("zstd") && err.contains("gzip"), "{err}");
    }

    #[test]
    fn bad_duration_is_located() {
        let err = load(&MINIMAL.replace("[upload]", "[upload]\ninterval = \"soon\"")).unwrap_err();
        assert!(err.contains("consentry.toml:9:12:"), "{err}");
        assert!(err.contains("not a duration"), "{err}");
    }

    /// `MINIMAL` with `[range.table] range.key = value`, and `[upload]`'s
    /// retries and intervals at the far ends of their ranges, so that no
    /// pair of them bounds the other.
    fn with_duration(range: &crate::ranges::DurationRange, value: &str) -> String {
        let mut upload = vec![
            ("retry_initial", "100ms"),
            ("retry_max", "1d"),
            ("interval_min", "1s"),
            ("interval_max", "30d"),
        ];
        upload.retain(|(key, _)| range.table != "upload" || *key != range.key);
        if range.table == "upload" {
            upload.push((range.key, value));
        }
        let lines: Vec<String> = upload
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect();
        let mut text = MINIMAL.replace("[upload]", &format!("[upload]\n{}", lines.join("\n")));
        if range.table != "upload" {
            text.push_str(&format!("[{}]\n{} = \"{value}\"\n", range.table, range.key));
        }
        text
    }

    #[test]
    fn every_duration_is_refused_outside_its_range_at_its_key() {
        use crate::ranges::{ALL, short};
        let (ms, s) = (Duration::from_millis(1), Duration::from_secs(1));
        for range in ALL {
            for inside in [range.min, range.max] {
                let text = with_duration(&range, &short(inside));
                assert!(load(&text).is_ok(), "{}: {:?}", range.key, load(&text));
            }
            for outside in [range.min - ms, range.max + s] {
                let value = short(outside);
                let text = with_duration(&range, &value);
                let at = text
                    .find(&format!("\n{} = \"{value}\"", range.key))
                    .unwrap();
                let line = text[..=at].matches('\n').count() + 1;
                let err = load(&text).unwrap_err();
                assert!(
                    err.starts_with(&format!("/etc/consentry/consentry.toml:{line}:")),
                    "{err}"
                );
                let expected = format!(
                    "[{}] {} is {value}, outside its range: give a duration from {}",
                    range.table,
                    range.key,
                    range.shown()
                );
                assert!(err.contains(&expected), "{err}");
            }
        }
        let err =
            load(&MINIMAL.replace("[upload]", "[upload]\ntimeout = \"100000000d\"")).unwrap_err();
        assert!(
            err.contains("consentry.toml:9:11: [upload] timeout is 100000000d, outside its range: give a duration from 1s to 10m"),
            "{err}"
        );
    }

    #[test]
    fn a_duration_under_its_old_name_is_located_there() {
        let err = load(&MINIMAL.replace("[upload]", "[upload]\ninterval = \"2d\"")).unwrap_err();
        assert!(
            err.contains("consentry.toml:9:12: [upload] batch_max_delay is 2d"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = format!(
            "{}[store]\nmax_record_age = \"2y\"\n[collect]\nksn_window = \"2d\"\n",
            MINIMAL.replace("[upload]", "[upload]\ntimeout = \"1h\"\nretry_max = \"2d\"")
        );
        let err = load(&text).unwrap_err();
        for key in ["timeout", "retry_max", "max_record_age", "ksn_window"] {
            assert!(err.contains(&format!("] {key} is ")), "{key}: {err}");
        }
    }

    #[test]
    fn an_overlong_product_value_is_located_at_its_key() {
        let long = MINIMAL.replace(
            "id = \"ksec\"",
            &format!("id = \"{}\"", "k".repeat(100 * 1024)),
        );
        let err = load(&long).unwrap_err();
        assert!(
            err.starts_with("/etc/consentry/consentry.toml:6:6: [product] id is 102400 bytes long"),
            "{}",
            &err[..200.min(err.len())]
        );
        let locale = MINIMAL.replace(
            "[upload]",
            "locale = \"en-US-x-0123456789-0123456789-0123456789\"\n[upload]",
        );
        assert!(
            load(&locale).unwrap_err().contains(
                "consentry.toml:8:10: [product] locale is 40 bytes long, more than the 35"
            )
        );
    }

    #[test]
    fn an_empty_path_is_refused_at_its_key() {
        let cases = [
            (
                "state_dir = \"state\"",
                "state_dir = \"\"",
                2,
                "state_dir is empty: give the directory the agent keeps its queue in, such as /var/lib/consentry",
            ),
            (
                "runtime_dir = \"/run/consentry\"",
                "runtime_dir = \"\"",
                3,
                "runtime_dir is empty: give the directory for the control",
            ),
            (
                "consent_file = \"consent.toml\"",
                "consent_file = \"\"",
                4,
                "consent_file is empty: give the consent file's path",
            ),
            (
                "[product]",
                "catalogue = \"\"\n[product]",
                5,
                "catalogue is empty: give a built-in catalogue (kis, kes, ksv) or a catalogue file, or remove the line",
            ),
            (
                "[product]",
                "policy_file = \"\"\n[product]",
                5,
                "policy_file is empty: give the policy file's path, or remove the line",
            ),
            (
                "[upload]",
                "[upload]\nca_file = \"\"",
                9,
                "[upload] ca_file is empty: give a PEM file",
            ),
            (
                "[upload]",
                "[upload]\nserver_certificate = \"\"",
                9,
                "[upload] server_certificate is empty: give the receiver's own certificate",
            ),
            (
                "[upload]",
                "[upload]\ntoken_file = \"\"",
                9,
                "[upload] token_file is empty: give the file holding the bearer token, or remove the line",
            ),
        ];
        for (from, to, line, expected) in cases {
            let err = load(&MINIMAL.replace(from, to)).unwrap_err();
            assert!(
                err.starts_with(&format!("/etc/consentry/consentry.toml:{line}:"))
                    && err.contains(expected),
                "{to}: {err}"
            );
        }
    }

    #[test]
    fn a_bad_pin_is_located_and_named() {
        let err = load(&MINIMAL.replace(
            "[upload]",
            "[upload]\npin_sha256 = [\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\", \"short\"]",
        ))
        .unwrap_err();
        assert!(err.contains("consentry.toml:9:"), "{err}");
        assert!(err.contains("pin_sha256 entry `short`"), "{err}");
    }

    #[test]
    fn an_endpoint_error_points_at_the_endpoint_key() {
        let remote = MINIMAL.replace(
            "https://telemetry.example.com",
            "http://telemetry.example.com",
        );
        let err = load(&remote).unwrap_err();
        // `[upload]` is line 8; `endpoint = ...` line 9, its value from
        // column 12.
        assert!(
            err.starts_with("/etc/consentry/consentry.toml:9:12:"),
            "{err}"
        );
    }

    #[test]
    fn port_zero_and_overlong_hosts_are_refused() {
        let zero = MINIMAL.replace("telemetry.example.com", "telemetry.example.com:0");
        assert!(load(&zero).unwrap_err().contains("port 0"));
        let long = MINIMAL.replace("telemetry.example.com", &"a".repeat(300));
        assert!(load(&long).unwrap_err().contains("at most 253"));
    }

    #[test]
    fn plain_http_is_refused_off_loopback_and_without_the_flag() {
        let remote = MINIMAL.replace(
            "https://telemetry.example.com",
            "http://telemetry.example.com",
        );
        assert!(load(&remote).unwrap_err().contains("https"));

        let loopback = MINIMAL.replace("https://telemetry.example.com", "http://127.0.0.1:9");
        assert!(
            load(&loopback)
                .unwrap_err()
                .contains("allow_plaintext_loopback")
        );

        let allowed = loopback.replace("[upload]", "[upload]\nallow_plaintext_loopback = true");
        assert!(load(&allowed).is_ok());

        let remote_allowed =
            remote.replace("[upload]", "[upload]\nallow_plaintext_loopback = true");
        assert!(load(&remote_allowed).unwrap_err().contains("loopback"));
    }

    #[test]
    fn plain_http_goes_only_to_the_hosts_written_as_the_docs_say() {
        let with = |endpoint: &str| {
            load(&MINIMAL.replace(
                "endpoint = \"https://telemetry.example.com/v1/batches\"",
                &format!("endpoint = \"{endpoint}\"\nallow_plaintext_loopback = true"),
            ))
        };
        for allowed in [
            "http://127.0.0.1:9/v1",
            "http://127.0.0.1/v1",
            "http://[::1]:9/v1",
            "http://[::1]",
            "HTTP://127.0.0.1:9/v1",
        ] {
            assert!(with(allowed).is_ok(), "{allowed}: {:?}", with(allowed));
        }
        // Each is loopback, and the first five are 127.0.0.1 to the URL
        // parser, but none is written as the documentation allows.
        for refused in [
            "http://2130706433/v1",
            "http://0x7f.1/v1",
            "http://127.1:9/v1",
            "http://0177.0.0.1/v1",
            "http://127.0.0.%31/v1",
            "http://127.0.0.2:9/v1",
            "http://[0:0:0:0:0:0:0:1]:9/v1",
            "http://[::ffff:127.0.0.1]/v1",
            "http://localhost:9/v1",
        ] {
            let err = with(refused).unwrap_err();
            assert!(
                err.contains("consentry.toml:9:12:")
                    && err.contains("must use https://")
                    && err.contains("written exactly as 127.0.0.1 or [::1]"),
                "{refused}: {err}"
            );
        }
    }
}
