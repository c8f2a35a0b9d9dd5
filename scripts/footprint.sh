#!/usr/bin/env bash
# The idle daemon's footprint: starts `consentry daemon` on a throwaway
# config (every clause accepted, so every collector is on; the endpoint is a
# closed loopback port, so nothing leaves the machine), lets it idle, and
# prints its RSS, CPU and wake-ups from /proc.
#
#   scripts/footprint.sh                 # the shipped release build, 60 s
#   FOOTPRINT_SECONDS=5 CONSENTRY_BIN=target/debug/consentry scripts/footprint.sh
#
# Without CONSENTRY_BIN it first builds the binary as it ships
# (`cargo build --release --locked --no-default-features`: no demo), so a
# release build with the demo left over from `cargo run --release -- demo`
# is never the one measured.
#
# It prints numbers; it asserts no target (timing on a shared machine
# flakes). BENCHMARKS.md records what it measured.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FOOTPRINT_SECONDS:-60}
if [ -n "${CONSENTRY_BIN:-}" ]; then
    bin=$CONSENTRY_BIN
else
    cargo build --release --locked --no-default-features --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/consentry"
fi

dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/consentry.toml" <<TOML
state_dir = "state"
runtime_dir = "run"
consent_file = "consent.toml"
[product]
id = "footprint"
version = "1.0.0.0"
[upload]
endpoint = "https://127.0.0.1:9/v1/batches"
TOML
for clause in eula ksn marketing; do
    "$bin" consent grant "$clause" --config "$dir/consentry.toml" >/dev/null
done

CONSENTRY_LOG=warn "$bin" daemon --config "$dir/consentry.toml" 2>"$dir/daemon.log" &
pid=$!
for _ in $(seq 100); do
    [ -S "$dir/run/control.sock" ] && break
    sleep 0.1
done
[ -S "$dir/run/control.sock" ] || { echo "the daemon did not start:" >&2; cat "$dir/daemon.log" >&2; exit 1; }
sleep 1   # let the start-up collection and first attempts settle

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
switches() {
    cat /proc/"$pid"/task/*/status |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {n += $2} END {print n}'
}
hz=$(getconf CLK_TCK)
t0=$(ticks); s0=$(switches); start=$(date +%s%N)
# RSS once a second (reading /proc wakes nothing in the daemon): it lets
# go of its code pages ten seconds after start and whenever its RSS has
# grown by a MiB since (src/daemon/footprint.rs), so one value would
# not tell the whole story.
samples=()
for _ in $(seq "$seconds"); do
    sleep 1
    samples+=("$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")")
done
t1=$(ticks); s1=$(switches); end=$(date +%s%N)
read -r rss_median rss_max < <(printf '%s\n' "${samples[@]}" | sort -n |
    awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)], v[NR]}')

rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(ls "/proc/$pid/task" | wc -l)
awk -v bin="$bin" -v size="$(stat -c %s "$bin")" -v ns="$((end - start))" \
    -v t="$((t1 - t0))" -v hz="$hz" -v s="$((s1 - s0))" \
    -v rss="$rss" -v hwm="$hwm" -v threads="$threads" \
    -v median="$rss_median" -v max="$rss_max" 'BEGIN {
    secs = ns / 1e9; cpu = t / hz
    printf "binary          %s (%d bytes)\n", bin, size
    printf "idle for        %.1f s\n", secs
    printf "rss_kib         %d at the end; %d median, %d max of one a second (peak %d)\n", rss, median, max, hwm
    printf "threads         %d\n", threads
    printf "cpu             %.3f s = %.4f %%\n", cpu, cpu * 100 / secs
    printf "wakeups_per_s   %.2f (context switches of all threads)\n", s / secs
}'
