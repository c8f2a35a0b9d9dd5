#!/usr/bin/env bash
# The crash soak, long: the test `soak::acknowledged_events_survive_random_kills_under_load`
# (tests/it/soak.rs) with 1,000 cycles of ingest load, SIGKILL at a random
# moment and restart, the receiver failing a quarter of the cycles; then
# conservation is checked (every acknowledged install task delivered,
# duplicates only under one batch id, verdict counts between acknowledged
# and sent, SQLite's integrity check after every kill).
#
#   scripts/soak-crash.sh                 # 1,000 cycles
#   scripts/soak-crash.sh 200             # fewer
#   CONSENTRY_SOAK_SEED=123 scripts/soak-crash.sh   # replay a run
#
# CI runs the same test with 30 cycles as part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-1000}
CONSENTRY_SOAK_CYCLES=$cycles cargo test --locked --test it soak -- --nocapture 2>&1 |
    grep -E -A4 '^soak:|test result|panicked|FAILED'
