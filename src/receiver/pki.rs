//! The receiver's certificates: a throwaway CA and the server certificate
//! it signs for the loopback names, or the self-signed `CA:TRUE`
//! certificate of a common mistake. Made at start-up, never stored.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ReceiverError;
use crate::upload::tls::Pin;

/// A throwaway CA and a server certificate it signed for 127.0.0.1, ::1 and
/// localhost. The CA's PEM is what the agent's `ca_file` points to.
pub struct LoopbackPki {
    pub ca_pem: String,
    /// The server's own certificate, what `server_certificate` points to.
    pub server_pem: String,
    /// The pin of the server's key (base64 SHA-256 of its SPKI), computed
    /// from the key itself, not from the certificate.
    pub server_pin: Pin,
    /// The server's private key (PKCS#8 PEM), for a server the tests run
    /// themselves with this certificate (the OpenTelemetry Collector of
    /// `tests/it/collector`).
    pub server_key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl LoopbackPki {
    pub fn generate() -> Result<Self, ReceiverError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "consentry loopback test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "consentry loopback receiver");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            server_pem: leaf.pem(),
            server_pin: Pin::of_spki(&leaf_key.subject_public_key_info()),
            server_key_pem: leaf_key.serialize_pem(),
            chain: vec![leaf.der().clone(), ca.der().clone()],
            key_der: leaf_key.serialize_der(),
        })
    }

    /// One self-signed certificate for 127.0.0.1 that says `CA:TRUE`, as
    /// `openssl req -x509` makes by default: webpki refuses it as a
    /// server's own certificate (`CaUsedAsEndEntity`) even when it is
    /// trusted as a CA. `ca_pem` and `server_pem` are both that certificate.
    pub fn self_signed_ca() -> Result<Self, ReceiverError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let certificate = params.self_signed(&key)?;
        Ok(Self {
            ca_pem: certificate.pem(),
            server_pem: certificate.pem(),
            server_pin: Pin::of_spki(&key.subject_public_key_info()),
            server_key_pem: key.serialize_pem(),
            chain: vec![certificate.der().clone()],
            key_der: key.serialize_der(),
        })
    }

    pub(super) fn server_config(&self) -> Result<rustls::ServerConfig, ReceiverError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        Ok(rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)?)
    }
}
