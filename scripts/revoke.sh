#!/usr/bin/env bash
# A revoke with 100,000 queued records of the clause: queues 100,000
# install tasks (the EULA's installation_errors purpose) in a daemon whose
# endpoint is a closed loopback port, then times `consentry consent revoke
# eula`, which returns once the daemon has purged them.
#
#   scripts/revoke.sh                       # the release build
#   scripts/revoke.sh target/debug/consentry
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/consentry}
[ -x "$bin" ] || cargo build --release --locked --no-default-features --quiet
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/consentry.toml" <<TOML
state_dir = "state"
runtime_dir = "run"
consent_file = "consent.toml"
[product]
id = "revoke"
version = "1.0.0.0"
[collect]
interval = "1h"
[upload]
endpoint = "https://127.0.0.1:9/v1/batches"
batch_max_delay = "1h"
TOML
"$bin" consent grant eula --config "$dir/consentry.toml" >/dev/null
CONSENTRY_LOG=warn "$bin" daemon --config "$dir/consentry.toml" 2>"$dir/daemon.log" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/run/ingest.sock" ] && break; sleep 0.1; done
python3 -c '
for n in range(100000):
    print("{\"kind\":\"install_task\",\"task\":\"update\",\"status\":\"failed\",\"error_type\":\"io\",\"error_code\":%d,\"duration_ms\":1200,\"campaign_id\":\"c-7\"}" % n)
' > "$dir/lines.jsonl"
"$bin" emit - --config "$dir/consentry.toml" < "$dir/lines.jsonl" >/dev/null
start=$(date +%s%N)
"$bin" consent revoke eula --config "$dir/consentry.toml" --json >"$dir/revoke.json"
end=$(date +%s%N)
purged=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"]["purged"])' "$dir/revoke.json")
echo "revoke took $(( (end - start) / 1000000 )) ms; purged $purged records"
