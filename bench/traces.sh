#!/usr/bin/env bash
# What [traces] costs: wxgate with traces off ("wxgate") against the same
# binary with traces on at RATIO ("wxgate-b"), in the same interleaved rounds
# of bench/run.sh, exporting to a sink collector (bench/otlp_sink.py) on
# the load CPU.
#
#   RATIO=0.01 bash bench/traces.sh
#   RATIO=1 RUNS=5 bash bench/traces.sh
#
# Knobs: RATIO (default 0.01), SCENARIOS (default "wxgate wxgate-b"), and
# every knob of bench/run.sh (RUNS, DURATION, SKIP_BUILD, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${RATIO:=0.01}" "${LOAD_CPU:=1}"
out=$(mktemp)
taskset -c "$LOAD_CPU" python3 bench/otlp_sink.py >"$out" &
sink=$!
trap 'kill $sink 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 50); do [ -s "$out" ] && break; sleep 0.1; done
port=$(head -1 "$out")
[ -n "$port" ] || { echo "the sink did not start" >&2; exit 1; }
echo "traces at sample_ratio $RATIO, exported to 127.0.0.1:$port"
if [ -z "${SKIP_BUILD:-}" ] && [ -z "${WXGATE_BIN:-}" ]; then
  cargo build --release --locked
fi
WXGATE_B="${WXGATE_B:-${WXGATE_BIN:-target/release/wxgate}}" \
WXGATE_B_TOML=$'[traces]\n'"endpoint = \"http://127.0.0.1:$port/v1/traces\""$'\n'"sample_ratio = $RATIO" \
SCENARIOS="${SCENARIOS:-wxgate wxgate-b}" SKIP_BUILD=1 \
  bash bench/run.sh
