//! Which servers the uploader believes: the rustls client configuration,
//! the two verifiers the config can ask for, and public-key pins.
//!
//! Protocol versions are TLS 1.3 and TLS 1.2, named explicitly
//! ([`PROTOCOL_VERSIONS`]); nothing older is ever offered (rustls has no
//! TLS 1.0 or 1.1 at all). The server is trusted in one of two ways:
//!
//! - **a chain** (the default): the system's CA certificates plus
//!   `ca_file`, verified by rustls' platform verifier exactly as reqwest
//!   would (chain, validity dates, host name, key usage);
//! - **one certificate** (`server_certificate`): the server must present
//!   exactly that certificate, byte for byte, self-signed or not, CA or not.
//!   Its host names must still cover the endpoint's host unless
//!   `pin_sha256` is set too. Its validity dates are not checked: it is
//!   trusted by identity, like an SSH host key.
//!
//! On top of either, `pin_sha256` refuses a server whose leaf key matches
//! none of the pins, however valid its chain. In every mode the handshake
//! signature is verified with the provider's algorithms: a server must
//! hold the private key of the certificate it presents.
//!
//! This module reads certificate files and builds verifiers; it never opens
//! a connection and never reads the token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The only protocol versions the uploader offers, newest first.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A SHA-256 of a SubjectPublicKeyInfo (the public key and its algorithm),
/// written as base64, as in HPKP and curl's `--pinnedpubkey sha256//…`.
/// Pinning the key rather than the certificate survives a renewal that
/// keeps the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Pin([u8; 32]);

impl Pin {
    /// The pin of a DER-encoded SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// The pin of the key a certificate carries.
    pub fn of_certificate(certificate: &CertificateDer<'_>) -> Result<Self, rustls::Error> {
        let parsed = webpki::EndEntityCert::try_from(certificate)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(Self::of_spki(parsed.subject_public_key_info().as_ref()))
    }
}

/// Base64, as written in the config.
impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin(sha256//{self})")
    }
}

/// Accepts the bare base64 of HPKP and curl's `sha256//` prefix alike, so
/// the value `check --connect` prints can be pasted as it is.
impl FromStr for Pin {
    type Err = BadPin;

    fn from_str(entry: &str) -> Result<Self, BadPin> {
        let text = entry.trim();
        let text = text.strip_prefix("sha256//").unwrap_or(text);
        let bytes = BASE64.decode(text).map_err(|err| BadPin::NotBase64 {
            entry: entry.to_owned(),
            why: err.to_string(),
        })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| BadPin::Length {
            entry: entry.to_owned(),
            bytes: bytes.len(),
        })?;
        Ok(Self(bytes))
    }
}

/// What a pin must be, said with every refusal.
const PIN_FORM: &str = "a pin is the base64 of the 32-byte SHA-256 of the server's SubjectPublicKeyInfo (44 characters ending in `=`, see docs/tls.md)";

/// Why a `pin_sha256` entry is not a pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPin {
    #[error("pin_sha256 entry `{entry}` is not base64 ({why}); {PIN_FORM}")]
    NotBase64 { entry: String, why: String },
    #[error("pin_sha256 entry `{entry}` decodes to {bytes} bytes, not 32; {PIN_FORM}")]
    Length { entry: String, bytes: usize },
}

impl TryFrom<String> for Pin {
    type Error = BadPin;

    fn try_from(text: String) -> Result<Self, BadPin> {
        text.parse()
    }
}

/// The server's leaf key matched none of `pin_sha256`. Carried inside
/// `rustls::Error` (as a `CertificateError::Other`) so the handshake fails
/// with it and `diagnose` can name the key the server did present.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the server's public key (sha256//{presented}) matches none of pin_sha256")]
pub struct PinMismatch {
    pub presented: Pin,
}

/// The server presented another certificate than `server_certificate`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the server presented a certificate other than server_certificate (its key is sha256//{presented})"
)]
pub struct NotTheConfiguredCertificate {
    pub presented: Pin,
}

/// Why the TLS settings cannot be used. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {key} {path}: {source}")]
    Unreadable {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} {path} is not usable: {message}")]
    Invalid {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error(
        "cannot load the system's CA certificates ({0}); install them (ca-certificates), or set ca_file or server_certificate"
    )]
    SystemRoots(#[source] rustls::Error),
    #[error("cannot configure TLS: {0}")]
    Config(#[source] rustls::Error),
}

/// What the TLS settings of `[upload]` are, paths already resolved.
#[derive(Debug, Clone, Copy)]
pub struct TrustSettings<'a> {
    pub ca_file: Option<&'a Path>,
    pub server_certificate: Option<&'a Path>,
    pub pins: &'a [Pin],
}

/// Builds the client configuration: reads and checks every file now, so a
/// bad one stops the daemon at start-up (and `check`), not at the first
/// send.
pub fn client_config(trust: TrustSettings<'_>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier: Arc<dyn ServerCertVerifier> = match trust.server_certificate {
        Some(path) => Arc::new(ExactCertificate {
            certificate: read_server_certificate(path)?,
            check_name: trust.pins.is_empty(),
            algorithms: provider.signature_verification_algorithms,
        }),
        None => {
            let extra = match trust.ca_file {
                Some(path) => read_ca_file(path)?,
                None => Vec::new(),
            };
            Arc::new(
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                    .map_err(TlsError::SystemRoots)?,
            )
        }
    };
    let verifier = if trust.pins.is_empty() {
        verifier
    } else {
        Arc::new(Pinned {
            inner: verifier,
            pins: trust.pins.to_vec(),
        })
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_pem_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Unreadable {
        key,
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| TlsError::Invalid {
        key,
        path: path.to_path_buf(),
        message,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(format!("bad PEM: {err}")))?;
    if certificates.is_empty() {
        return Err(invalid(
            "no CERTIFICATE block found (a PEM file is expected)".into(),
        ));
    }
    Ok(certificates)
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = read_pem_certificates("ca_file", path)?;
    for (index, certificate) in certificates.iter().enumerate() {
        webpki::anchor_from_trusted_cert(certificate).map_err(|err| TlsError::Invalid {
            key: "ca_file",
            path: path.to_path_buf(),
            message: format!("certificate {} cannot be a trust anchor: {err}", index + 1),
        })?;
    }
    Ok(certificates)
}

fn read_server_certificate(path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    let invalid = |message: String| TlsError::Invalid {
        key: "server_certificate",
        path: path.to_path_buf(),
        message,
    };
    let mut certificates = read_pem_certificates("server_certificate", path)?;
    if certificates.len() != 1 {
        return Err(invalid(format!(
            "it holds {} certificates; it must hold exactly the server's own (for a CA, use ca_file)",
            certificates.len()
        )));
    }
    let certificate = certificates.remove(0);
    webpki::EndEntityCert::try_from(&certificate)
        .map_err(|err| invalid(format!("not a valid X.509 v3 certificate: {err}")))?;
    Ok(certificate)
}

/// A `rustls::Error` for a failed check of ours, kept typed for `diagnose`.
fn refusal(error: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// Another verifier, then the leaf key against the pins.
#[derive(Debug)]
struct Pinned {
    inner: Arc<dyn ServerCertVerifier>,
    pins: Vec<Pin>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let presented = Pin::of_certificate(end_entity)?;
        if self.pins.contains(&presented) {
            Ok(verified)
        } else {
            Err(refusal(PinMismatch { presented }))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, certificate, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, certificate, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Trusts exactly one certificate: the server must present it byte for
/// byte, and prove with the handshake signature that it holds its key.
#[derive(Debug)]
struct ExactCertificate {
    certificate: CertificateDer<'static>,
    /// Whether the endpoint's host must be among the certificate's names
    /// (not when a pin names the key as well).
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ExactCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() != self.certificate.as_ref() {
            let presented = Pin::of_certificate(end_entity)?;
            return Err(refusal(NotTheConfiguredCertificate { presented }));
        }
        if self.check_name {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The crypto provider of every verifier here (and of the receiver).
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PublicKeyData};

    fn self_signed(names: &[&str], ca: bool) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let certificate = params.self_signed(&key).unwrap();
        (certificate.der().clone(), key)
    }

    #[test]
    fn spki_pin_matches_an_independent_hash_of_the_key() {
        let (certificate, key) = self_signed(&["127.0.0.1"], true);
        let reference = BASE64.encode(Sha256::digest(key.subject_public_key_info()));
        let pin = Pin::of_certificate(&certificate).unwrap();
        assert_eq!(pin.to_string(), reference);
        assert_eq!(pin, Pin::of_spki(&key.subject_public_key_info()));
    }

    #[test]
    fn pins_parse_bare_or_with_the_curl_prefix() {
        let text = BASE64.encode([7u8; 32]);
        let bare: Pin = text.parse().unwrap();
        let prefixed: Pin = format!("sha256//{text}").parse().unwrap();
        assert_eq!(bare, prefixed);
        assert_eq!(bare.to_string(), text);
        assert_eq!(format!("{bare:?}"), format!("Pin(sha256//{text})"));
    }

    #[test]
    fn a_bad_pin_is_refused_naming_the_entry() {
        let err = "not base64!".parse::<Pin>().unwrap_err();
        assert!(matches!(err, BadPin::NotBase64 { .. }), "{err:?}");
        assert!(
            err.to_string().contains("`not base64!` is not base64"),
            "{err}"
        );
        let short = BASE64.encode([1u8; 20]);
        let err = short.parse::<Pin>().unwrap_err();
        assert_eq!(
            err,
            BadPin::Length {
                entry: short.clone(),
                bytes: 20
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("`{short}` decodes to 20 bytes, not 32")),
            "{err}"
        );
        assert!("".parse::<Pin>().is_err());
    }

    #[test]
    fn exact_certificate_refuses_another_and_checks_the_name() {
        let (certificate, _) = self_signed(&["127.0.0.1"], true);
        let (other, _) = self_signed(&["127.0.0.1"], false);
        let verifier = ExactCertificate {
            certificate: certificate.clone(),
            check_name: true,
            algorithms: provider().signature_verification_algorithms,
        };
        let loopback = ServerName::try_from("127.0.0.1").unwrap();
        let now = UnixTime::now();
        assert!(
            verifier
                .verify_server_cert(&certificate, &[], &loopback, &[], now)
                .is_ok(),
            "a CA:TRUE self-signed certificate is trusted when it is the one configured"
        );
        let err = verifier
            .verify_server_cert(&other, &[], &loopback, &[], now)
            .unwrap_err();
        let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = err else {
            panic!("{err:?}");
        };
        assert!(other.0.is::<NotTheConfiguredCertificate>());

        let elsewhere = ServerName::try_from("example.test").unwrap();
        let err = verifier
            .verify_server_cert(&certificate, &[], &elsewhere, &[], now)
            .unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ),
            "{err:?}"
        );
        let pinned = ExactCertificate {
            check_name: false,
            ..verifier
        };
        assert!(
            pinned
                .verify_server_cert(&certificate, &[], &elsewhere, &[], now)
                .is_ok()
        );
    }

    #[test]
    fn pinned_refuses_a_key_not_pinned_after_the_inner_verifier_accepts() {
        let (certificate, key) = self_signed(&["127.0.0.1"], false);
        let inner = Arc::new(ExactCertificate {
            certificate: certificate.clone(),
            check_name: false,
            algorithms: provider().signature_verification_algorithms,
        });
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let now = UnixTime::now();
        let good = Pinned {
            inner: inner.clone(),
            pins: vec![Pin([0; 32]), Pin::of_spki(&key.subject_public_key_info())],
        };
        assert!(
            good.verify_server_cert(&certificate, &[], &name, &[], now)
                .is_ok()
        );
        let bad = Pinned {
            inner,
            pins: vec![Pin([0; 32])],
        };
        let err = bad
            .verify_server_cert(&certificate, &[], &name, &[], now)
            .unwrap_err();
        let expected = Pin::of_spki(&key.subject_public_key_info()).to_string();
        assert!(err.to_string().contains(&expected), "{err}");
    }

    #[test]
    fn files_are_checked_when_the_config_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(TrustSettings {
            ca_file: Some(&missing),
            server_certificate: None,
            pins: &[],
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("cannot read ca_file"), "{err}");

        let two = dir.path().join("two.pem");
        let (a, _) = self_signed(&["127.0.0.1"], false);
        let (b, _) = self_signed(&["127.0.0.1"], false);
        let pem = |der: &CertificateDer<'_>| {
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                BASE64.encode(der)
            )
        };
        std::fs::write(&two, pem(&a) + &pem(&b)).unwrap();
        let err = client_config(TrustSettings {
            ca_file: None,
            server_certificate: Some(&two),
            pins: &[],
        })
        .unwrap_err();
        assert!(err.to_string().contains("holds 2 certificates"), "{err}");

        let one = dir.path().join("one.pem");
        std::fs::write(&one, pem(&a)).unwrap();
        let config = client_config(TrustSettings {
            ca_file: None,
            server_certificate: Some(&one),
            pins: &[Pin([0; 32])],
        })
        .unwrap();
        assert!(
            config
                .alpn_protocols
                .iter()
                .all(|p| p.as_slice() == b"http/1.1")
        );
    }
}
