//! Integration tests: the real `consentry` binary against a real TLS
//! receiver on 127.0.0.1. One test binary, one link step.

mod activation;
mod architecture;
mod bad_input;
mod cli;
mod collector;
mod compression;
mod consent;
mod consent_proof;
mod consent_window;
mod control;
mod delivery;
mod disclosure;
mod faults;
mod fuzz_corpus;
mod history;
mod ingest;
mod installer;
mod ldp;
mod lifecycle;
mod otlp;
mod packaging;
mod personal;
mod personal_marks;
mod receipts;
mod report;
mod security;
mod service;
mod soak;
mod store;
mod support;
mod tls;
