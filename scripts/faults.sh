#!/usr/bin/env bash
# The fault tests, long: the mixed outage of
# `faults::outage::a_mixed_outage_loses_nothing_and_keeps_to_the_backoff`
# (tests/it/faults/outage.rs) for minutes instead of CI's 20 s (500s, 429
# with Retry-After, stalls past the request timeout, resets and failing
# TLS handshakes, 2 s each in turn, under ingest load), then every other
# fault test once: full disk, read-only and deleted state directory, a
# database damaged while running, wall-clock jumps. Each prints a
# `faults:` line with its figures; a test that cannot inject its fault here
# (no root for a mount, no libfaketime) prints `SKIPPED: …`.
#
#   scripts/faults.sh          # a 5-minute outage
#   scripts/faults.sh 180      # a 3-minute one
#
# CI runs the same tests, with the 20 s outage, as part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
CONSENTRY_FAULT_SECONDS=$seconds cargo test --locked --test it faults:: -- --nocapture 2>&1 |
    grep -E '^faults:|^SKIPPED:|test result|panicked|FAILED'
