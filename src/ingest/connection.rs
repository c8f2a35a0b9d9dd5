//! One ingest connection: a reader that parses chunk after chunk and hands
//! each to the store writer, and an acknowledger that waits for each
//! chunk's commit, in order, and writes the answers.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use super::event::{LineError, Outcome, Parser};
use super::protocol::{NOT_STORED, Reply};
use super::{Ingest, MAX_IN_FLIGHT, MAX_LINE_BYTES, READ_BUFFER};
use crate::catalogue::ActivationMethod;
use crate::collect::installation_errors;
use crate::collect::ksn::{self, KsnDelta};
use crate::consent::Registry;
use crate::gate::{Drafts, Refusal};
use crate::record::Record;
use crate::store::{self, WriterError};

/// What a chunk of lines amounts to, before it is stored.
#[derive(Default)]
struct Chunk {
    first_line: u64,
    last_line: u64,
    errors: Vec<(u64, LineError)>,
    records: store::Filling,
    ksn: KsnDelta,
    /// Key-file activations: nothing to send, but recorded with the chunk.
    activations: u64,
    discarded: u64,
    /// The activation its last line reported: such a line ends its chunk,
    /// so that every later line is gated knowing it (`in_force`).
    activation: Option<ActivationMethod>,
}

/// What the gate made of one record.
enum Gated {
    Queued,
    Discarded,
    Refused,
}

/// A chunk on its way to the client: its answers, and its commit.
struct Pending {
    first_line: u64,
    last_line: u64,
    errors: Vec<(u64, LineError)>,
    /// Records queued, KSN events folded and key-file activations kept
    /// by the commit.
    records: u64,
    aggregated: u64,
    activations: u64,
    discarded: u64,
    commit: Option<oneshot::Receiver<Result<(), WriterError>>>,
}

/// Where the reader is in the byte stream.
struct Framing<'g> {
    buffer: Vec<u8>,
    next_line: u64,
    /// Inside a line longer than [`MAX_LINE_BYTES`]: skip to its newline.
    skipping: bool,
    /// The last chunk ended at an activation line: the buffer may hold
    /// complete lines still, to be parsed before anything is read.
    resume: bool,
    /// The gate, for installer tasks (what they repeat is kept from one
    /// to the next).
    drafts: Drafts<'g>,
}

pub(super) async fn handle(stream: UnixStream, ingest: Arc<Ingest>) -> std::io::Result<()> {
    let (mut reader, writer) = stream.into_split();
    let (pending, inbox) = mpsc::channel(MAX_IN_FLIGHT);
    let acknowledger = tokio::spawn(acknowledge(writer, inbox));
    let mut framing = Framing {
        buffer: Vec::with_capacity(READ_BUFFER),
        next_line: 1,
        skipping: false,
        resume: false,
        drafts: ingest.gate.drafts(),
    };
    let mut eof = false;
    // A read error ends the connection only once the acknowledger has
    // answered what was already submitted: it is never left running alone.
    let mut failed = None;
    loop {
        if !framing.resume {
            if framing.buffer.capacity() - framing.buffer.len() < READ_BUFFER / 2 {
                framing.buffer.reserve(READ_BUFFER);
            }
            match reader.read_buf(&mut framing.buffer).await {
                Ok(read) => eof = read == 0,
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        let chunk = framing.chunk(&ingest, eof);
        if chunk.last_line >= chunk.first_line {
            let commit = submit(&ingest, chunk).await;
            if pending.send(commit).await.is_err() {
                break; // the acknowledger ended: the client is gone
            }
        }
        if eof && !framing.resume {
            break;
        }
    }
    drop(pending);
    let acknowledged = acknowledger.await.unwrap_or(Ok(()));
    match failed {
        Some(err) => Err(err),
        None => acknowledged,
    }
}

impl Framing<'_> {
    /// Parses every complete line in the buffer (and, at end of stream, the
    /// unterminated last one) into a chunk, keeping any partial line; or
    /// the lines up to the first that reports an activation, keeping the
    /// rest for the next chunk ([`Framing::resume`]).
    fn chunk(&mut self, ingest: &Ingest, eof: bool) -> Chunk {
        let parser = Parser {
            catalogue: ingest.gate.catalogue(),
            context: &ingest.context,
        };
        let mut chunk = Chunk {
            first_line: self.next_line,
            last_line: self.next_line - 1,
            ..Chunk::default()
        };
        let mut start = 0;
        self.resume = false;
        while let Some(offset) = memchr::memchr(b'\n', &self.buffer[start..]) {
            let end = start + offset;
            self.line(&parser, ingest, start, end, &mut chunk);
            start = end + 1;
            if chunk.activation.is_some() {
                self.resume = true;
                break;
            }
        }
        if self.resume {
            // The rest waits until the activation is in force.
        } else if eof && start < self.buffer.len() {
            let end = self.buffer.len();
            self.line(&parser, ingest, start, end, &mut chunk);
            start = end;
        } else if eof && self.skipping {
            self.skipped(&mut chunk);
        }
        self.buffer.drain(..start);
        if !self.resume && self.buffer.len() > MAX_LINE_BYTES {
            // The partial line is already too long: drop what we have and
            // skip to its end; its error goes out with the chunk that ends it.
            self.buffer.clear();
            self.skipping = true;
        }
        let ksn_allowed = ingest.gate.is_allowed(ksn::PURPOSE);
        if !ksn_allowed && !chunk.ksn.is_empty() {
            ingest.discards.add(ksn::PURPOSE, chunk.ksn.events());
            chunk.discarded += chunk.ksn.events();
            chunk.ksn = KsnDelta::default();
        }
        chunk
    }

    fn line(
        &mut self,
        parser: &Parser,
        ingest: &Ingest,
        start: usize,
        end: usize,
        chunk: &mut Chunk,
    ) {
        let number = self.next_line;
        self.next_line += 1;
        chunk.last_line = number;
        if self.skipping {
            self.skipping = false;
            chunk.errors.push((number, too_long()));
            return;
        }
        let text = &self.buffer[start..end];
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if end - start > MAX_LINE_BYTES {
            chunk.errors.push((number, too_long()));
            return;
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return; // blank lines are counted, and ignored
        }
        match parser.parse(text, &mut chunk.ksn) {
            Err(error) => chunk.errors.push((number, error)),
            Ok(Outcome::Aggregated) => {}
            Ok(Outcome::Activated { method, record }) => {
                chunk.activated(ingest, number, method, record);
            }
            Ok(Outcome::Record(record)) => {
                chunk.gate(ingest, number, &record, None);
            }
            Ok(Outcome::Install(task)) => {
                let context = &ingest.context;
                let country = installation_errors::country(context);
                let draft = task.draft(context, country.as_deref());
                let records = &mut chunk.records;
                let admitted = self
                    .drafts
                    .admit(&draft, SystemTime::now(), |line| records.push(line));
                chunk.file(ingest, number, admitted);
            }
        }
    }

    /// The oversized line ran to the end of the stream.
    fn skipped(&mut self, chunk: &mut Chunk) {
        let number = self.next_line;
        self.next_line += 1;
        self.skipping = false;
        chunk.last_line = number;
        chunk.errors.push((number, too_long()));
    }
}

impl Chunk {
    /// Gates `record` under `view`, else under the published snapshot, and
    /// files the outcome.
    fn gate(
        &mut self,
        ingest: &Ingest,
        number: u64,
        record: &Record,
        view: Option<&Registry>,
    ) -> Gated {
        let admitted = match view {
            Some(view) => ingest.gate.admit_under(record, view),
            None => ingest.gate.admit(record),
        };
        let records = &mut self.records;
        let admitted = admitted.map(|gated| records.push(gated.line()));
        self.file(ingest, number, admitted)
    }

    /// Files what the gate made of the record of line `number`: queued
    /// already, or discarded, or refused.
    fn file(&mut self, ingest: &Ingest, number: u64, admitted: Result<(), Refusal>) -> Gated {
        match admitted {
            Ok(()) => Gated::Queued,
            Err(Refusal::NotAllowed { purpose, .. }) => {
                ingest.discards.add(&purpose, 1);
                self.discarded += 1;
                Gated::Discarded
            }
            Err(Refusal::Check(err)) => {
                // A value its field's declaration does not allow
                // (`personal_data`, `out_of_shape`: the message names the
                // field and the kind, never the value), or a record the
                // agent built that does not fit the catalogue (a custom
                // catalogue lacking a field the agent adds).
                self.errors
                    .push((number, LineError::new(err.code(), err.to_string())));
                Gated::Refused
            }
        }
    }

    /// An activation line: its record (one by code) gated under the
    /// published snapshot with the activation (`Registry::with_activation`:
    /// the consent owner publishes the same once it is committed) and,
    /// unless the record was refused (then the line did nothing), the
    /// activation kept for the store; the line ends the chunk.
    fn activated(
        &mut self,
        ingest: &Ingest,
        number: u64,
        method: ActivationMethod,
        record: Option<Record>,
    ) {
        let took = match &record {
            Some(record) => {
                let known = (*ingest.gate.registry())
                    .clone()
                    .with_activation(Some(method));
                let gated = self.gate(ingest, number, record, Some(&known));
                !matches!(gated, Gated::Refused)
            }
            None => {
                self.activations += 1;
                true
            }
        };
        if took {
            self.activation = Some(method);
        }
    }
}

fn too_long() -> LineError {
    LineError::new(
        "too_long",
        format!("the line is longer than {MAX_LINE_BYTES} bytes; nothing of it was kept"),
    )
}

/// Hands the chunk's records and KSN delta to the writer as one job.
async fn submit(ingest: &Ingest, chunk: Chunk) -> Pending {
    let Chunk {
        first_line,
        last_line,
        errors,
        records,
        ksn,
        activations,
        discarded,
        activation,
    } = chunk;
    let mut pending = Pending {
        first_line,
        last_line,
        errors,
        records: records.records(),
        aggregated: ksn.events(),
        activations,
        discarded,
        commit: None,
    };
    if records.is_empty() && ksn.is_empty() && activation.is_none() {
        return pending;
    }
    let tally = ingest.writer.tally();
    // A chunk with randomised reports stores the day's count with them.
    let catalogue = ingest.gate.catalogue();
    let budgeted: Vec<&str> = catalogue
        .purposes()
        .filter(|p| p.privacy_budget.is_some())
        .map(|p| p.id.as_str())
        .collect();
    let counted = (!budgeted.is_empty() && records.purposes().any(|p| budgeted.contains(&p)))
        .then(|| ingest.gate.spent());
    // Built and packed here, and the records freed here, where they were
    // made: the writer thread only inserts the rows.
    let segments = records.finish();
    let submitted = ingest
        .writer
        .submit(move |connection, aggregate| {
            tally.enqueue_segments(connection, &segments)?;
            if let Some(spent) = &counted {
                store::ldp_budget::save(connection, spent)?;
            }
            aggregate.fold(&ksn, SystemTime::now());
            if let Some(method) = activation {
                store::activation::record(connection, method)?;
            }
            Ok(())
        })
        .await;
    let commit = submitted.unwrap_or_else(|err| answered(Err(err)));
    pending.commit = Some(match activation {
        None => commit,
        Some(method) => in_force(ingest, method, commit).await,
    });
    pending
}

/// Waits for the commit of a chunk that reported an activation, then
/// until the consent owner has published decisions that know it: the
/// connection reads on, and the chunk is acknowledged, only then, so any
/// line sent after the ack, on any connection, is gated knowing it.
async fn in_force(
    ingest: &Ingest,
    method: ActivationMethod,
    commit: oneshot::Receiver<Result<(), WriterError>>,
) -> oneshot::Receiver<Result<(), WriterError>> {
    let stored = commit.await.unwrap_or(Err(WriterError::Stopped));
    if stored.is_ok() {
        ingest.activated(method).await;
    }
    answered(stored)
}

/// A commit's answer, already known.
fn answered(stored: Result<(), WriterError>) -> oneshot::Receiver<Result<(), WriterError>> {
    let (reply, receiver) = oneshot::channel();
    let _ = reply.send(stored);
    receiver
}

/// Waits for each chunk's commit in order and writes its answers.
async fn acknowledge(
    writer: OwnedWriteHalf,
    mut inbox: mpsc::Receiver<Pending>,
) -> std::io::Result<()> {
    let mut out = BufWriter::new(writer);
    let (mut accepted, mut rejected, mut discarded) = (0u64, 0u64, 0u64);
    while let Some(mut pending) = inbox.recv().await {
        let stored = match pending.commit.take() {
            None => Ok(()),
            Some(receiver) => receiver.await.unwrap_or(Err(WriterError::Stopped)),
        };
        let durable = pending.records + pending.aggregated + pending.activations;
        rejected += pending.errors.len() as u64;
        match stored {
            Ok(()) => {
                accepted += durable;
            }
            Err(err) => {
                tracing::error!(error = %err, lines = durable, "ingest lines not stored");
                rejected += durable;
                // The chunk is one unit: one error names its range.
                pending.errors.push((
                    pending.last_line,
                    LineError::new(
                        NOT_STORED,
                        format!(
                            "{durable} valid line(s) among lines {}..={} could not be stored ({err}); send them again",
                            pending.first_line, pending.last_line
                        ),
                    ),
                ));
            }
        }
        discarded += pending.discarded;
        for (line, error) in pending.errors {
            let reply = Reply::Error {
                line,
                error: error.code.to_owned(),
                message: error.message,
            };
            write_reply(&mut out, &reply).await?;
        }
        let ack = Reply::Ack {
            ack: pending.last_line,
            accepted,
            rejected,
            discarded,
        };
        write_reply(&mut out, &ack).await?;
        if inbox.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    out.into_inner().shutdown().await
}

async fn write_reply(out: &mut BufWriter<OwnedWriteHalf>, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).expect("replies always serialize");
    line.push(b'\n');
    out.write_all(&line).await
}
