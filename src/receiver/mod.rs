//! A loopback HTTPS receiver that accepts batches and remembers them: what
//! `consentry demo` uploads to, and what every integration test runs
//! against. Not a production collector endpoint.
//!
//! It binds 127.0.0.1 only, serves a certificate from a throwaway CA made at
//! start-up ([`LoopbackPki`]; or, to reproduce a common mistake, a
//! self-signed `CA:TRUE` certificate as `openssl req -x509` makes), decodes
//! each body with the same `protocol` module the uploader uses, and answers
//! with a status that tests can script (to prove that a 500 leaves a batch
//! queued, say). It reads consentry's JSON envelopes and, by
//! `Content-Type: application/x-protobuf`, OTLP logs export requests (read
//! back into the same envelope shape, `upload::otlp::to_envelope`). A probe (`Consentry-Probe: 1`, `docs/protocol.md`) is
//! answered 204 and not recorded; a required bearer token is checked first.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::upload::otlp;
use crate::upload::protocol::Envelope;
use crate::upload::transport::{IDEMPOTENCY_KEY, PROBE_HEADER, UPLOAD_INTERVAL};

mod decode;
mod pki;

use decode::Decoded;
pub use pki::LoopbackPki;

/// Largest request body the receiver reads.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot make a loopback certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot bind 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub content_encoding: Option<String>,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The status the receiver answered with.
    pub status: u16,
    /// The decoded batch, or why it could not be decoded.
    pub envelope: Result<Envelope, Undecodable>,
    /// The body as it arrived, still encoded.
    pub body: Bytes,
    /// The deletion request, when the body was one instead of a batch.
    pub deletion: Option<crate::upload::protocol::DeletionEnvelope>,
    /// When the whole body had arrived.
    pub received_at: std::time::Instant,
}

/// Why a request's body is not a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecodable {
    #[error("body unreadable: {0}")]
    Unreadable(String),
    #[error("{0}")]
    Otlp(OtlpUnreadable),
    #[error("{0}")]
    Envelope(String),
    #[error("a deletion request, not a batch")]
    DeletionRequest,
}

/// Why an OTLP body is not a request the agent sent: not protobuf (or not
/// compressed as it says), or not the agent's mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpUnreadable {
    #[error("{0}")]
    Decode(String),
    #[error(transparent)]
    Mapping(#[from] otlp::ReadError),
}

/// What the receiver accepted (a 2xx answered), added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Batches answered with a 2xx.
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Their bodies' bytes as they arrived (compressed).
    pub wire_bytes: u64,
    /// The same bodies' JSON, decompressed.
    pub json_bytes: u64,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<ReceivedRequest>>,
    /// Keep each request in `requests` (off for load runs: counts only).
    forget: AtomicBool,
    batches: AtomicU64,
    records: AtomicU64,
    wire_bytes: AtomicU64,
    json_bytes: AtomicU64,
    scripted: Mutex<VecDeque<u16>>,
    status: AtomicU16,
    /// Read requests, then never answer (a receiver that hangs).
    hang: AtomicBool,
    /// Close each connection right after the handshake, before answering
    /// (a receiver that resets).
    reset: AtomicBool,
    /// `Retry-After` sent with every answer that is not a 2xx.
    retry_after: Mutex<Option<String>>,
    /// Refuse, with this status, any batch whose body holds this text.
    refuse_marker: Mutex<Option<(String, u16)>>,
    /// OTLP only: answer every accepted batch with a partial success that
    /// rejects this many of its records (at most all), with this message.
    otlp_rejecting: Mutex<Option<(u64, String)>>,
    /// `Retry-After` on a 2xx, and the `Consentry-Upload-Interval` header
    /// on every answer.
    pace: Mutex<(Option<String>, Option<String>)>,
    /// When set, connections are served this acceptor's certificate, from
    /// a CA nobody trusts: every handshake fails (a receiver behind a
    /// wrong certificate, or a middlebox).
    untrusted: Mutex<Option<TlsAcceptor>>,
    /// When each attempt arrived: a request, a handshake that failed or a
    /// connection hung up on (what a client's request rate is measured by).
    attempts: Mutex<Vec<std::time::Instant>>,
    /// Milliseconds to wait before answering (a slow receiver).
    delay_ms: std::sync::atomic::AtomicU64,
    /// When set, a request without `Authorization: Bearer <this>` gets 401.
    token: Mutex<Option<String>>,
    /// Answer 415 to a zstd body (a receiver that takes gzip only).
    gzip_only: AtomicBool,
    /// Probes answered (never recorded as requests).
    probes: std::sync::atomic::AtomicUsize,
    arrived: Notify,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    address: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Receiver {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(pki: &LoopbackPki) -> Result<Self, ReceiverError> {
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config()?));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ReceiverError::Bind)?;
        let address = listener.local_addr().map_err(ReceiverError::Bind)?;
        let state = Arc::new(State {
            status: AtomicU16::new(200),
            ..State::default()
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            Arc::clone(&state),
            shutdown.clone(),
        ));
        Ok(Self {
            address,
            state,
            shutdown,
        })
    }

    /// The URL to put in `[upload] endpoint`.
    pub fn url(&self) -> String {
        format!("https://{}/v1/batches", self.address)
    }

    /// The status answered from now on (once any scripted ones are used).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// While set, a zstd body is answered 415 Unsupported Media Type (a
    /// receiver that takes gzip only).
    pub fn set_gzip_only(&self, gzip_only: bool) {
        self.state.gzip_only.store(gzip_only, Ordering::SeqCst);
    }

    /// From now on, take each request and never answer it (until this is
    /// switched off again or the receiver is dropped).
    /// Drops every connection before answering while `reset` is set.
    pub fn set_reset(&self, reset: bool) {
        self.state.reset.store(reset, Ordering::SeqCst);
    }

    /// Adds `Retry-After: value` to every answer that is not a 2xx.
    pub fn set_retry_after(&self, value: Option<&str>) {
        *lock(&self.state.retry_after) = value.map(str::to_owned);
    }

    pub fn set_hang(&self, hang: bool) {
        self.state.hang.store(hang, Ordering::SeqCst);
    }

    /// From now on (OTLP only), answer each accepted batch with a partial
    /// success rejecting `count` of its records (`None`: full success).
    pub fn set_otlp_rejecting(&self, rejecting: Option<(u64, &str)>) {
        *lock(&self.state.otlp_rejecting) = rejecting.map(|(n, m)| (n, m.to_owned()));
    }

    /// From now on, add `Retry-After: retry_after` to every 2xx, and
    /// `Consentry-Upload-Interval: interval` to every answer (a receiver
    /// slowing the fleet).
    pub fn set_pace(&self, retry_after: Option<&str>, interval: Option<&str>) {
        *lock(&self.state.pace) = (retry_after.map(str::to_owned), interval.map(str::to_owned));
    }

    /// While `on`, present a certificate from a CA the agent does not
    /// trust, so that every TLS handshake fails.
    pub fn set_untrusted_certificate(&self, on: bool) -> Result<(), ReceiverError> {
        let acceptor = if on {
            let impostor = LoopbackPki::generate()?;
            Some(TlsAcceptor::from(Arc::new(impostor.server_config()?)))
        } else {
            None
        };
        *lock(&self.state.untrusted) = acceptor;
        Ok(())
    }

    /// When each attempt so far arrived: every request, failed handshake
    /// and connection hung up on, in order.
    pub fn attempts(&self) -> Vec<std::time::Instant> {
        lock(&self.state.attempts).clone()
    }

    /// From now on, answer `status` to any batch with a record whose fields
    /// contain `marker` (a receiver that refuses one bad record).
    pub fn refuse_containing(&self, marker: &str, status: u16) {
        *lock(&self.state.refuse_marker) = Some((marker.to_owned(), status));
    }

    /// From now on, wait `delay` after reading each request before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// From now on, answer 401 to any request (probes included) that lacks
    /// `Authorization: Bearer <token>`.
    pub fn require_token(&self, token: &str) {
        *lock(&self.state.token) = Some(token.to_owned());
    }

    /// How many probes were answered (they are not in [`Receiver::requests`]).
    pub fn probes(&self) -> usize {
        self.state.probes.load(Ordering::SeqCst)
    }

    /// Statuses for the next requests, in order, before the standing one.
    pub fn script(&self, statuses: &[u16]) {
        lock(&self.state.scripted).extend(statuses);
    }

    /// From now on, only add accepted batches up ([`Receiver::totals`]) and
    /// keep no request: for load runs, whose requests would not fit in
    /// memory. A consentry envelope is then counted without making its
    /// records (still read whole as JSON): the receiver shares the machine
    /// with the agent a load run measures.
    pub fn count_only(&self) {
        self.state.forget.store(true, Ordering::SeqCst);
    }

    /// What was accepted so far.
    pub fn totals(&self) -> Totals {
        let load = |n: &AtomicU64| n.load(Ordering::SeqCst);
        Totals {
            batches: load(&self.state.batches),
            records: load(&self.state.records),
            wire_bytes: load(&self.state.wire_bytes),
            json_bytes: load(&self.state.json_bytes),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Waits until at least `count` requests arrived; false on timeout.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            if lock(&self.state.requests).len() >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return lock(&self.state.requests).len() >= count;
            }
        }
    }

    /// Waits until at least `count` records were accepted in all (in
    /// [`Receiver::count_only`] mode too); false on timeout. It wakes as
    /// each batch is counted, so a load run's end is timed to the batch,
    /// not to a polling interval.
    pub async fn wait_for_records(&self, count: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            if self.totals().records >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.totals().records >= count;
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let acceptor = lock(&state.untrusted)
            .clone()
            .unwrap_or_else(|| acceptor.clone());
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                lock(&state.attempts).push(std::time::Instant::now());
                return;
            };
            if state.reset.load(Ordering::SeqCst) {
                // Take the request's first bytes, then hang up unanswered.
                let mut tls = tls;
                let mut buffer = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buffer).await;
                lock(&state.attempts).push(std::time::Instant::now());
                return;
            }
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move {
                    // A connection kept alive from before the reset or the
                    // certificate change is hung up on too.
                    if state.reset.load(Ordering::SeqCst) || lock(&state.untrusted).is_some() {
                        lock(&state.attempts).push(std::time::Instant::now());
                        return Err(std::io::Error::other("hung up"));
                    }
                    Ok(handle(request, &state).await)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

async fn handle(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if !state.forget.load(Ordering::SeqCst) {
        lock(&state.attempts).push(std::time::Instant::now());
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let idempotency_key = header(IDEMPOTENCY_KEY);
    let content_encoding = header("content-encoding");
    let authorization = header("authorization");
    let content_type = header("content-type");
    let token_refused = lock(&state.token)
        .as_ref()
        .is_some_and(|token| authorization.as_deref() != Some(&format!("Bearer {token}")));
    if header(PROBE_HEADER).as_deref() == Some("1") {
        // A probe: answered, never stored or counted as a batch.
        state.probes.fetch_add(1, Ordering::SeqCst);
        return empty_response(if token_refused { 401 } else { 204 });
    }
    let body = http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes());
    let otlp = content_type.is_some_and(|t| t.starts_with(otlp::CONTENT_TYPE));
    let zstd_refused =
        state.gzip_only.load(Ordering::SeqCst) && content_encoding.as_deref() == Some("zstd");
    if let Some(response) = counted_only(state, &body, otlp || token_refused || zstd_refused) {
        return response;
    }
    let Decoded {
        envelope,
        body,
        json_bytes,
        deletion,
    } = Decoded::of(body, otlp);
    let status = if token_refused {
        401
    } else if zstd_refused {
        415
    } else {
        scripted_status(state, &envelope, deletion.is_some())
    };
    let accepted = (200..300).contains(&status);
    let rejecting = match (accepted && otlp, &envelope) {
        (true, Ok(envelope)) => lock(&state.otlp_rejecting)
            .clone()
            .map(|(count, message)| (count.min(envelope.records.len() as u64), message)),
        _ => None,
    };
    if let (true, Ok(envelope)) = (accepted, &envelope) {
        state.count(envelope, body.len(), json_bytes);
    }
    let answer = |status| respond(state, status, rejecting.as_ref());
    if state.forget.load(Ordering::SeqCst) {
        state.arrived.notify_waiters();
        return answer(status);
    }
    lock(&state.requests).push(ReceivedRequest {
        method,
        path,
        idempotency_key,
        content_encoding,
        authorization,
        status,
        envelope,
        body,
        deletion,
        received_at: std::time::Instant::now(),
    });
    state.arrived.notify_waiters();
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    while state.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answer(status)
}

/// The status for the next request: the next scripted one, or the
/// standing one.
fn next_status(state: &State) -> u16 {
    lock(&state.scripted)
        .pop_front()
        .unwrap_or_else(|| state.status.load(Ordering::SeqCst))
}

/// In [`Receiver::count_only`] mode, a consentry envelope is answered
/// from its count alone (`decode::tally`), unless it is `special` (OTLP, a
/// refused token or encoding) or a refusal marker is set: those, and a
/// body that is not an envelope, take the full path.
fn counted_only(
    state: &State,
    body: &Result<Bytes, impl std::fmt::Display>,
    special: bool,
) -> Option<Response<Full<Bytes>>> {
    if special || !state.forget.load(Ordering::SeqCst) || lock(&state.refuse_marker).is_some() {
        return None;
    }
    let bytes = body.as_ref().ok()?;
    let (records, json_bytes) = decode::tally(bytes)?;
    let status = next_status(state);
    if (200..300).contains(&status) {
        state.add(records, bytes.len(), json_bytes);
    }
    state.arrived.notify_waiters();
    Some(respond(state, status, None))
}

/// The status the test asked for: the next scripted one, or the standing
/// one; 400 for a body that is neither a batch nor a deletion request; the
/// marker's status for a batch holding a record with the marker.
fn scripted_status(state: &State, envelope: &Result<Envelope, Undecodable>, deletion: bool) -> u16 {
    let status = next_status(state);
    let status = if envelope.is_err() && !deletion && (200..300).contains(&status) {
        400
    } else {
        status
    };
    match (&*lock(&state.refuse_marker), envelope) {
        (Some((marker, refusal)), Ok(envelope))
            if envelope
                .records
                .iter()
                .any(|r| r.fields.get().contains(marker.as_str())) =>
        {
            *refusal
        }
        _ => status,
    }
}

impl State {
    /// Adds an accepted batch to the totals.
    fn count(&self, envelope: &Envelope, wire_bytes: usize, json_bytes: usize) {
        self.add(envelope.records.len() as u64, wire_bytes, json_bytes);
    }

    /// Adds an accepted batch of `records` to the totals.
    fn add(&self, records: u64, wire_bytes: usize, json_bytes: usize) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.records.fetch_add(records, Ordering::SeqCst);
        self.wire_bytes
            .fetch_add(wire_bytes as u64, Ordering::SeqCst);
        self.json_bytes
            .fetch_add(json_bytes as u64, Ordering::SeqCst);
    }
}

/// The response with `status`: an OTLP partial success when `rejecting`,
/// and the pacing headers the test set.
fn respond(state: &State, status: u16, rejecting: Option<&(u64, String)>) -> Response<Full<Bytes>> {
    let mut response = match rejecting {
        Some((count, message)) => Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, otlp::CONTENT_TYPE)
            .body(Full::new(Bytes::from(otlp::partial_success(
                *count, message,
            ))))
            .expect("a status code from a u16 in range builds a response"),
        None => empty_response(status),
    };
    let pace = lock(&state.pace).clone();
    let headers = response.headers_mut();
    let retry_after = if (200..300).contains(&status) {
        pace.0
    } else {
        lock(&state.retry_after).clone()
    };
    if let Some(value) = retry_after.and_then(|v| hyper::header::HeaderValue::from_str(&v).ok()) {
        headers.insert(hyper::header::RETRY_AFTER, value);
    }
    if let Some(value) = pace
        .1
        .and_then(|v| hyper::header::HeaderValue::from_str(&v).ok())
    {
        headers.insert(UPLOAD_INTERVAL, value);
    }
    response
}

fn empty_response(status: u16) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("a status code from a u16 in range builds a response")
}
