#!/usr/bin/env bash
# The fleet's figures (issue 23), printed by measurements kept with the tests
# that build the same set-ups (ignored in CI, run here in release):
#   - revocation propagation: 1,000 logouts on instance A, time until B and C
#     refuse the token (tests/fleet.rs, measure_revocation_propagation);
#   - a socket on B closed after a logout on A (tests/websocket.rs);
#   - the failover window under Sentinel and Cluster, and revoked tokens let
#     through meanwhile (tests/fleet.rs, *_failover_loses_no_logout).
# Authenticated proxying on Redis against the memory store, and Redis
# commands per request: SCENARIOS="wxgate wxgate-redis" bash bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo test --release --test fleet -- --ignored --nocapture measure_revocation_propagation 2>&1 |
    grep -E '^(revocation|  )'
cargo test --release --test websocket -- --ignored --nocapture measure_socket_close 2>&1 |
    grep -E '^socket'
cargo test --release --test fleet -- --nocapture failover 2>&1 | grep -E '^failover'
cargo test --release --test fleet -- --ignored --nocapture measure_revocation_memory 2>&1 |
    grep -E 'live revocations'
