#!/usr/bin/env bash
# Fuzzes every parser of outside input for a while each (cargo-fuzz,
# libFuzzer, the nightly toolchain), growing the corpora in fuzz/corpus/;
# `cargo test` replays them (tests/it/fuzz_corpus.rs).
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 600        # ten minutes each
#
# Needs `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
# A crash leaves its input in fuzz/artifacts/<target>/: add it to the
# corpus once fixed, so the regression test keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
for target in catalogue consent_file config ingest_line control_request server_answer; do
    echo "== $target ($seconds s)"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=131072 -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)|cov:|SUMMARY|panicked' | tail -4
done
