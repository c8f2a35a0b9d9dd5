//! Failures to reach the receiver, explained in words a person can act on.
//!
//! Pure functions: [`explain`] walks an error's chain of causes
//! (`std::error::Error::source`), looking for what the TLS stack or the
//! operating system said (`rustls::Error`, a webpki error, one of `tls`'s
//! pin errors, `std::io::Error`), and [`explain_status`] reads an HTTP
//! status. `check --connect` prints the explanation; a failed send puts the
//! same words in the log and the audit trail. This module decides nothing
//! about retrying (that is `policy`); it only explains.

use std::error::Error;
use std::io::ErrorKind;
use std::time::{Duration, SystemTime};

use rustls::pki_types::UnixTime;
use rustls::{CertificateError, PeerIncompatible};

use super::tls::{NotTheConfiguredCertificate, PinMismatch};
use crate::clock::rfc3339;

/// The advice for the first cause in `err`'s chain that has one, or `None`
/// when nothing in it is recognised (the caller shows the raw error).
pub fn explain(err: &(dyn Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(cause) = next {
        if let Some(advice) = explain_one(cause) {
            return Some(advice);
        }
        next = cause.source();
    }
    None
}

/// What an HTTP status to a probe means, `None` for a 2xx.
pub fn explain_status(status: u16, has_token: bool) -> Option<String> {
    Some(match status {
        200..=299 => return None,
        401 | 403 if has_token => {
            format!("the endpoint refused the credentials ({status}); check token_file")
        }
        401 | 403 => format!(
            "the endpoint requires credentials ({status}); put its bearer token in a file and set token_file"
        ),
        404 | 405 | 410 => format!(
            "the endpoint answered {status}: the server runs, but not a consentry receiver at this URL; check the path of `endpoint`"
        ),
        300..=399 => format!(
            "the endpoint answered with a redirect ({status}); consentry follows none: set `endpoint` to the final URL"
        ),
        500..=599 => format!(
            "the receiver answered {status}: it is reachable but failing; batches stay queued until it recovers"
        ),
        _ => format!("the endpoint answered {status}"),
    })
}

fn explain_one(cause: &(dyn Error + 'static)) -> Option<String> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return explain_tls(tls);
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        // An io::Error's source() skips the error it wraps: look inside.
        if let Some(inner) = io.get_ref()
            && let Some(advice) = explain_one(inner)
        {
            return Some(advice);
        }
        return explain_io(io.kind());
    }
    if let Some(mismatch) = cause.downcast_ref::<PinMismatch>() {
        return Some(pin_mismatch(mismatch));
    }
    if let Some(other) = cause.downcast_ref::<NotTheConfiguredCertificate>() {
        return Some(not_configured(other));
    }
    if let Some(webpki) = cause.downcast_ref::<webpki::Error>() {
        return explain_webpki(webpki);
    }
    if let Some(reqwest) = cause.downcast_ref::<reqwest::Error>()
        && reqwest.is_timeout()
    {
        return explain_io(ErrorKind::TimedOut);
    }
    // The resolver's error carries no type of its own to look for.
    let text = cause.to_string();
    if text == "dns error" || text.contains("failed to lookup address") {
        return Some(
            "the endpoint's host name could not be resolved (DNS); check its spelling and this machine's resolver"
                .to_owned(),
        );
    }
    None
}

fn explain_tls(err: &rustls::Error) -> Option<String> {
    use rustls::Error as E;
    Some(match err {
        E::InvalidCertificate(certificate) => return explain_certificate(certificate),
        E::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired,
        ) => "the server does not speak TLS 1.2 or 1.3, the only versions this agent uses; upgrade the server's TLS".to_owned(),
        E::PeerIncompatible(other) => format!(
            "the server and this agent have no TLS settings in common ({other:?}); the agent offers TLS 1.2 and 1.3 with current cipher suites"
        ),
        E::AlertReceived(alert) => format!(
            "the server ended the TLS handshake ({alert:?}): it may want a TLS version, cipher or client certificate this agent does not offer"
        ),
        E::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the server did not answer with TLS: is the endpoint a plain http:// port? use the server's https port".to_owned()
        }
        _ => return None,
    })
}

fn explain_certificate(err: &CertificateError) -> Option<String> {
    use CertificateError as C;
    Some(match err {
        C::UnknownIssuer => "the server's certificate is not signed by a CA this agent trusts; set `ca_file` to the CA that issued it (or `server_certificate` for a self-signed one)".to_owned(),
        C::NotValidForName => "the server's certificate is not valid for the endpoint's host name; use a host name the certificate names, or reissue it".to_owned(),
        C::NotValidForNameContext { expected, presented } => {
            let host = expected.to_str();
            if presented.is_empty() {
                format!("the certificate is not valid for host {host}; it names no host at all (no subjectAltName); reissue it with {host} in subjectAltName")
            } else {
                format!(
                    "the certificate is not valid for host {host}; its names are {}; use one of them in `endpoint`, or reissue the certificate with {host}",
                    presented.join(", ")
                )
            }
        }
        C::Expired => "the server's certificate has expired; renew it on the server (or check this machine's clock)".to_owned(),
        C::ExpiredContext { time, not_after } => format!(
            "the server's certificate expired at {} (it is now {}); renew it on the server (or check this machine's clock)",
            show(*not_after),
            show(*time)
        ),
        C::NotValidYet => "the server's certificate is not valid yet; check the clocks of this machine and of the server".to_owned(),
        C::NotValidYetContext { time, not_before } => format!(
            "the server's certificate is valid only from {} (it is now {}); check the clocks of this machine and of the server",
            show(*not_before),
            show(*time)
        ),
        C::BadSignature => "the server's certificate chain has a bad signature; the server sends a damaged or forged certificate".to_owned(),
        C::Revoked => "the server's certificate has been revoked by its CA; the server needs a new one".to_owned(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "the server's certificate is not meant for TLS servers (its extended key usage lacks serverAuth); issue one for server authentication".to_owned(),
        C::Other(other) => return explain_one(other.0.as_ref()),
        _ => return None,
    })
}

fn explain_webpki(err: &webpki::Error) -> Option<String> {
    Some(match err {
        webpki::Error::CaUsedAsEndEntity => "the server's certificate is a CA certificate (CA:TRUE) used as the server's own; issue a leaf certificate from it, or trust exactly this certificate with `server_certificate`".to_owned(),
        webpki::Error::RequiredEkuNotFoundContext(_) => "the server's certificate is not meant for TLS servers (its extended key usage lacks serverAuth); issue one for server authentication".to_owned(),
        webpki::Error::UnsupportedCertVersion => "the server's certificate is X.509 version 1 (no extensions); reissue it as version 3".to_owned(),
        _ => return None,
    })
}

fn explain_io(kind: ErrorKind) -> Option<String> {
    Some(match kind {
        ErrorKind::ConnectionRefused => "connection refused: nothing listens at the endpoint's address and port; check that the receiver runs and that the port is right".to_owned(),
        ErrorKind::TimedOut => "no answer in time: the endpoint is unreachable or too slow; check the address, firewalls and `timeout`".to_owned(),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "no route to the endpoint's host: check the address and this machine's network".to_owned(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => "the server closed the connection before the exchange finished; check that the endpoint is an https:// port and look at the server's log".to_owned(),
        ErrorKind::AddrNotAvailable => "the endpoint's address cannot be used from this machine; check the address".to_owned(),
        _ => return None,
    })
}

fn pin_mismatch(err: &PinMismatch) -> String {
    format!(
        "the server's public key matches none of `pin_sha256`; the server presents sha256//{}",
        err.presented
    )
}

fn not_configured(err: &NotTheConfiguredCertificate) -> String {
    format!(
        "the server presents a different certificate than `server_certificate` (its key is sha256//{}); copy the server's current certificate into that file",
        err.presented
    )
}

fn show(time: UnixTime) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(time.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::Pin;
    use rustls::OtherError;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    /// An error with a source, as reqwest and hyper wrap what went wrong.
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] std::io::Error);

    /// A rustls error as it arrives: inside an io::Error, inside more.
    fn wrapped(err: rustls::Error) -> Outer {
        Outer(std::io::Error::new(ErrorKind::InvalidData, err))
    }

    fn other(err: impl Error + Send + Sync + 'static) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
    }

    fn advice(err: impl Error + 'static) -> String {
        explain(&err).expect("an explanation")
    }

    #[test]
    fn a_ca_used_as_the_server_certificate_is_named_with_both_remedies() {
        let text = advice(wrapped(other(webpki::Error::CaUsedAsEndEntity)));
        assert!(text.contains("CA certificate (CA:TRUE)"), "{text}");
        assert!(text.contains("server_certificate"), "{text}");
    }

    #[test]
    fn an_unknown_issuer_points_at_ca_file() {
        let text = advice(wrapped(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        )));
        assert!(
            text.starts_with(
                "the server's certificate is not signed by a CA this agent trusts; set `ca_file`"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_wrong_name_lists_the_names_the_certificate_has() {
        let text = advice(wrapped(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("telemetry.example.com").unwrap(),
                presented: vec!["DnsName(\"a.example.com\")".into(), "127.0.0.1".into()],
            },
        )));
        assert!(
            text.starts_with(
                "the certificate is not valid for host telemetry.example.com; its names are"
            ),
            "{text}"
        );
        assert!(text.contains("a.example.com"), "{text}");
    }

    #[test]
    fn expiry_and_not_yet_valid_give_the_dates() {
        let text = advice(wrapped(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            },
        )));
        assert!(text.contains("expired at 2023-11-14T22:13:20Z"), "{text}");
        let text = advice(wrapped(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        )));
        assert!(text.contains("not valid yet"), "{text}");
    }

    #[test]
    fn a_pin_mismatch_prints_the_pin_the_server_has() {
        let presented = Pin::of_spki(b"some key");
        let text = advice(wrapped(other(PinMismatch { presented })));
        assert_eq!(
            text,
            format!(
                "the server's public key matches none of `pin_sha256`; the server presents sha256//{presented}"
            )
        );
    }

    #[test]
    fn socket_errors_in_plain_words() {
        let refused = advice(Outer(ErrorKind::ConnectionRefused.into()));
        assert!(refused.starts_with("connection refused"), "{refused}");
        let timeout = advice(Outer(ErrorKind::TimedOut.into()));
        assert!(timeout.starts_with("no answer in time"), "{timeout}");
        #[derive(Debug, thiserror::Error)]
        #[error("dns error")]
        struct Dns;
        assert!(advice(Dns).contains("could not be resolved"));
    }

    #[test]
    fn old_servers_and_plain_http_ports_are_recognised() {
        let text = advice(wrapped(rustls::Error::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13,
        )));
        assert!(text.contains("TLS 1.2 or 1.3"), "{text}");
        let text = advice(wrapped(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        )));
        assert!(text.contains("did not answer with TLS"), "{text}");
    }

    #[test]
    fn unknown_errors_have_no_advice() {
        assert_eq!(explain(&Outer(ErrorKind::Other.into())), None);
        assert_eq!(
            explain(&wrapped(rustls::Error::General("odd".into()))),
            None
        );
    }

    #[test]
    fn statuses_to_a_probe() {
        assert_eq!(explain_status(204, true), None);
        assert_eq!(
            explain_status(401, true).unwrap(),
            "the endpoint refused the credentials (401); check token_file"
        );
        assert!(
            explain_status(403, false)
                .unwrap()
                .contains("set token_file")
        );
        assert!(explain_status(404, false).unwrap().contains("path"));
        assert!(explain_status(503, false).unwrap().contains("failing"));
    }
}
