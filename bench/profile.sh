#!/usr/bin/env bash
# Where does wxgate spend its CPU per request?
#
#   bash bench/profile.sh                   # perf: cpu-clock samples with call graphs
#   TOOL=callgrind bash bench/profile.sh    # valgrind: exact instruction counts
#   TOOL=strace SCENARIO=haproxy bash bench/profile.sh   # syscalls per request
#   SCENARIO=wxgate-public bash bench/profile.sh   # any scenario of run.sh (haproxy too)
#
# Same setup as bench/run.sh (see bench/lib.sh). Results go to OUTDIR
# (default bench/profile-out/, ignored by git):
#   perf:      perf.data, perf-children.txt (inclusive %), perf-self.txt (self %)
#   callgrind: callgrind.out.*, callgrind-inclusive.txt, callgrind-self.txt,
#              and the instructions per request on stdout.
#
# perf needs only the cpu-clock software event (hardware counters are not
# available in most VMs). callgrind runs a second wxgate under valgrind on its
# own port, switches instrumentation on after a warm-up, and counts the
# instructions of a fixed-duration load; that count is deterministic enough to
# compare two builds where req/s figures are too noisy.
set -euo pipefail

TOOL=${TOOL:-perf}
SCENARIO=${SCENARIO:-wxgate}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
RUNS=1
# lib.sh starts what the scenarios need (a TLS listener, Redis, Flask, ...).
SCENARIOS=${SCENARIOS:-$SCENARIO}
source "$(dirname "$0")/lib.sh"
OUTDIR=${OUTDIR:-$ROOT/bench/profile-out}
mkdir -p "$OUTDIR"

case $TOOL in
perf)
    command -v perf >/dev/null || die "perf is not installed (apt-get install linux-perf)"
    pid=$(proxy_pid "$SCENARIO")
    log "warm-up, then perf record -p $pid for ${PROFILE_SECONDS}s under '$SCENARIO' load"
    run_wrk "$SCENARIO" "$WARMUP" /dev/null
    perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$pid" \
        -o "$OUTDIR/perf.data" -- sleep "$PROFILE_SECONDS" 2>"$TMP/perf.log" &
    perf_pid=$!
    PIDS+=("$perf_pid")
    run_wrk "$SCENARIO" "${PROFILE_SECONDS}s" "$OUTDIR/wrk.txt"
    wait "$perf_pid" || die "perf record failed: $(cat "$TMP/perf.log")"
    grep -E 'Requests/sec|requests in' "$OUTDIR/wrk.txt" >&2
    # (Resolving DWARF call graphs takes a minute or two.)
    trim() { grep -E '^ +[0-9]' | sed -E 's/ {3,}[-0-9. ]*$//' | cut -c1-200; }
    perf report -i "$OUTDIR/perf.data" --stdio --children --sort sym -g none 2>/dev/null |
        trim >"$OUTDIR/perf-children.txt"
    perf report -i "$OUTDIR/perf.data" --stdio --no-children --no-inline --sort dso,sym -g none \
        2>/dev/null | trim >"$OUTDIR/perf-self.txt"
    echo "== where the time goes (self %, by library)"
    perf report -i "$OUTDIR/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null | trim
    echo
    echo "== inclusive % of wxgate's own steps and the big Pingora/kernel blocks"
    grep -E 'wxgate::|jsonwebtoken::decoding|proxy_to_upstream|proxy_handle_downstream|process_upstream_tasks|__sys_sendto|__sys_recvfrom|__GI___libc_(malloc|free)' \
        "$OUTDIR/perf-children.txt" | head -30 || true
    echo
    echo "== self %, top 30"
    head -30 "$OUTDIR/perf-self.txt"
    ;;
callgrind)
    command -v valgrind >/dev/null || die "valgrind is not installed"
    VG_PORT=$(free_port)
    # The config of the instance the scenario measures (the hook scenario has its own).
    vg_config=$TMP/wxgate.toml
    [[ $SCENARIO == login-wxgate-hook ]] && vg_config=$TMP/wxgate-hook.toml
    sed "s/^listen = .*/listen = \"127.0.0.1:$VG_PORT\"/" "$vg_config" >"$TMP/wxgate-vg.toml"
    RUST_LOG=warn taskset -c "$PROXY_CPU" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$OUTDIR/callgrind.out.%p" \
        "$WXGATE" run -c "$TMP/wxgate-vg.toml" >"$TMP/valgrind.log" 2>&1 &
    VG_PID=$!
    PIDS+=("$VG_PID")
    for _ in $(seq 300); do
        curl -s -o /dev/null "http://127.0.0.1:$VG_PORT/healthz" && break
        kill -0 "$VG_PID" 2>/dev/null || die "wxgate under valgrind exited: $(tail "$TMP/valgrind.log")"
        sleep 0.2
    done
    rm -f "$OUTDIR"/callgrind.out.*
    read -r url header <<<"$(scenario "$SCENARIO")"
    port=$(sed -E 's|^http://127\.0\.0\.1:([0-9]+)/.*|\1|' <<<"$url")
    [[ $port == "$WX_PORT" || $port == "${WXH_PORT:-}" ]] || die "$SCENARIO is not a wxgate scenario"
    vg_url="http://127.0.0.1:$VG_PORT/${url#http://127.0.0.1:"$port"/}"
    vg_wrk() { # vg_wrk DURATION OUTFILE
        local args=(-t1 -c10 "-d$1" --latency --timeout 10s)
        [[ -n $header ]] && args+=(-H "$header")
        # Logins post a code never used before, as in run.sh.
        [[ $SCENARIO == login-* ]] && args+=(-s "$ROOT/bench/login.lua")
        CODE_PREFIX="vg-$(date +%s%N)" taskset -c "$LOAD_CPU" wrk "${args[@]}" "$vg_url" >"$2"
    }
    log "warm-up (not instrumented) on $vg_url"
    vg_wrk 3s /dev/null
    # The same time idle first: what the process does without requests
    # (timers, health checks) is taken off, so that a run that completes
    # fewer requests under valgrind does not look costlier per request.
    log "instrumented idle for ${PROFILE_SECONDS}s"
    callgrind_control -i on "$VG_PID" >/dev/null
    sleep "$PROFILE_SECONDS"
    callgrind_control -d "$VG_PID" >/dev/null
    log "instrumented load for ${PROFILE_SECONDS}s"
    vg_wrk "${PROFILE_SECONDS}s" "$OUTDIR/wrk.txt"
    callgrind_control -d "$VG_PID" >/dev/null
    callgrind_control -i off "$VG_PID" >/dev/null
    requests=$(awk '/requests in/ {print $1}' "$OUTDIR/wrk.txt")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$OUTDIR/wrk.txt")
    idle_out=$OUTDIR/callgrind.out.$VG_PID.1
    out=$OUTDIR/callgrind.out.$VG_PID.2
    [[ -s $out && -s $idle_out ]] || die "no callgrind dumps ($idle_out, $out)"
    program_total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
    idle=$(program_total "$idle_out")
    total=$(( $(program_total "$out") - idle ))
    callgrind_annotate --inclusive=yes --threshold=99 "$out" 2>/dev/null >"$OUTDIR/callgrind-inclusive.txt"
    callgrind_annotate --threshold=95 "$out" 2>/dev/null >"$OUTDIR/callgrind-self.txt"
    echo "== $SCENARIO: $requests requests (non-2xx: ${non2xx:-0}), $total instructions ($idle idle taken off)"
    awk -v t="$total" -v n="$requests" 'BEGIN { printf "== %.0f instructions per request\n", t / n }'
    echo
    echo "== inclusive"
    grep -E '^ *[0-9,]+ \(' "$OUTDIR/callgrind-inclusive.txt" | head -60
    echo
    echo "== self"
    grep -E '^ *[0-9,]+ \(' "$OUTDIR/callgrind-self.txt" | head -40
    ;;
strace)
    # Syscalls per request: cheap to get, and exact. Works for any scenario
    # (SCENARIO=haproxy to compare). strace slows the proxy; only counts matter.
    command -v strace >/dev/null || die "strace is not installed (apt-get install strace)"
    pid=$(proxy_pid "$SCENARIO")
    run_wrk "$SCENARIO" "$WARMUP" /dev/null
    strace -c -f -p "$pid" -o "$OUTDIR/strace.txt" 2>/dev/null &
    strace_pid=$!
    PIDS+=("$strace_pid")
    sleep 0.5
    run_wrk "$SCENARIO" "${PROFILE_SECONDS}s" "$OUTDIR/wrk.txt"
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    requests=$(awk '/requests in/ {print $1}' "$OUTDIR/wrk.txt")
    echo "== $SCENARIO: syscalls per request ($requests requests)"
    awk -v n="$requests" '$1 ~ /^[0-9.]+$/ && $(NF) != "total" {
        printf "%-16s %6.2f\n", $NF, $4 / n }' "$OUTDIR/strace.txt" | sort -k2 -nr | head -12
    awk -v n="$requests" '$NF == "total" { printf "%-16s %6.2f\n", "total", $4 / n }' "$OUTDIR/strace.txt"
    ;;
*) die "TOOL is perf, callgrind or strace" ;;
esac
