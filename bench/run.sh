#!/usr/bin/env bash
# wxgate vs HAProxy 2.6: authenticated proxying on one thread.
#
#   bash bench/run.sh                 # 3 rounds of 10 s per scenario
#   RUNS=5 DURATION=20s bash bench/run.sh
#
# Both proxies run pinned to one CPU (PROXY_CPU), with one worker thread, in
# front of the same nginx upstream (one worker, `return 200 "ok"`). wrk and
# nginx share the other CPU (LOAD_CPU). Every scenario is run RUNS times,
# interleaved (round 1: all scenarios, round 2: all scenarios, ...), so that
# background noise spreads over all of them; the summary gives the median and
# the min..max of each figure. See bench/README.md.
#
# Knobs (environment):
#   RUNS=3 DURATION=10s CONNS=50 WARMUP=2s   load shape
#   PROXY_CPU=0 LOAD_CPU=1                   pinning
#   SKIP_BUILD=1                             use the existing target/release/wxgate
#   WXGATE_BIN=/path/to/wxgate               benchmark this binary instead (no build)
#   SCENARIOS="direct wxgate haproxy wxgate-401 wxgate-public haproxy-401 pingora"
#                                            (pingora: Pingora's own server, empty proxy)
#                                            also: haproxy-lean (signature and exp only),
#                                            wxgate-tls haproxy-tls (TLS 1.3, keep-alive),
#                                            wxgate-tls-new haproxy-tls-new (a TLS handshake
#                                            per request), wxgate-h2 haproxy-h2 (HTTP/2 over
#                                            TLS, h2load -c H2_CONNS=32 -m H2_STREAMS=10),
#                                            login-wxgate login-wxgate-redis login-flask ...
#   WXGATE_B=/path/to/other/wxgate           A/B: also run this binary (scenarios wxgate-b,
#                                            wxgate-b-401, wxgate-b-public), same rounds
#   WXGATE_B_TOML=$'[sessions]\nmax_per_user = 3'  sections appended to wxgate-b's config
#   WXGATE_TOML=...                          sections appended to wxgate's (and wxgate-b's)
#   WXGATE_B_SERVER='http1 = "pingora"'      extra [server] lines for wxgate-b (with
#                                            WXGATE_B=the same binary: the two HTTP/1 paths)
#   KEEP=1                                   keep the temp dir (configs, logs, raw wrk output)
set -euo pipefail

source "$(dirname "$0")/lib.sh"

# --- (g) load -----------------------------------------------------------------
# Per round and scenario:
#   req_s, p50_ms, p99_ms  wrk's figures
#   non2xx                 responses that were not 2xx (expected only for *-401)
#   cpu_pct                CPU used by the server under test (the proxy; nginx for
#                          "direct"), in % of one CPU. Near 100: it was the bottleneck.
#   us_per_req             its CPU time per request: the efficiency figure, the least
#                          sensitive to other load on the machine
#   load_cpu_pct           how busy LOAD_CPU was (wrk + nginx + anyone else). Near 100
#                          with cpu_pct well below: the load side was the bottleneck.
#   noise0_pct, noise1_pct CPU time on PROXY_CPU / LOAD_CPU used by processes not
#                          part of the benchmark (other people's builds, steal)
RESULTS=$TMP/results.tsv
printf 'round\tscenario\treq_s\tp50_ms\tp99_ms\tnon2xx\tcpu_pct\tus_per_req\tload_cpu_pct\tnoise0_pct\tnoise1_pct\n' >"$RESULTS"
log "wxgate $WX_PID, haproxy $HA_PID, nginx $NGINX_PID; proxies on CPU $PROXY_CPU, wrk+nginx on CPU $LOAD_CPU"
log "load: wrk -t1 -c$CONNS -d$DURATION --latency (warm-up $WARMUP), $RUNS rounds; $(uptime | sed 's/.*load/load/')"
TIMEFORMAT='%U %S'
# Redis commands so far, but the revocation feed's blocking XREADs (a few per
# second whatever the load) and our own INFO: what requests cost Redis.
redis_calls() {
    [[ -n ${REDIS_PORT:-} ]] || { echo 0; return; }
    redis-cli -p "$REDIS_PORT" info commandstats |
        awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_xread" && $1 != "cmdstat_info" {s += $3} END {print s + 0}'
}
for round in $(seq "$RUNS"); do
    for s in $SCENARIOS; do
        out=$TMP/wrk-$s-$round.txt
        run_wrk "$s" "$WARMUP" /dev/null
        pid=$(proxy_pid "$s")
        p0=$(cpu_ticks "$pid") n0=$(cpu_ticks "$NGINX_PID")
        c0=$(cpu_busy "$PROXY_CPU") l0=$(cpu_busy "$LOAD_CPU") w0=$(date +%s.%N)
        r0=$(redis_calls)
        # `time` reports wrk's own CPU seconds (user, sys) on stderr.
        { time run_wrk "$s" "$DURATION" "$out"; } 2>"$TMP/wrk-time"
        r1=$(redis_calls)
        p1=$(cpu_ticks "$pid") n1=$(cpu_ticks "$NGINX_PID")
        c1=$(cpu_busy "$PROXY_CPU") l1=$(cpu_busy "$LOAD_CPU") w1=$(date +%s.%N)
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        reqs=$(awk '/requests in/ {print $1}' "$out")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
        errs=$(awk '/Socket errors:/ {print $0}' "$out")
        [[ -n $errs ]] && log "$s: $errs"
        if [[ $s == wxgate-redis ]]; then
            printf 'round %s: %s Redis commands (feed reads aside) for %s authenticated requests\n' \
                "$round" "$((r1 - r0))" "$reqs" >>"$TMP/redis-calls.txt"
        fi
        read -r wrk_user wrk_sys <"$TMP/wrk-time"
        # Ticks of ours on each CPU: the proxy on PROXY_CPU; nginx and wrk on LOAD_CPU.
        ngx=$((n1 - n0))
        on0=$((p1 - p0))
        [[ $s == direct ]] && on0=0
        read -r cpu us load noise0 noise1 < <(awk -v p="$((p1 - p0))" -v on0="$on0" \
            -v ngx="$ngx" -v wu="$wrk_user" -v wsys="$wrk_sys" -v c="$((c1 - c0))" -v l="$((l1 - l0))" \
            -v n="$reqs" -v hz="$HZ" -v w0="$w0" -v w1="$w1" 'BEGIN {
                w = w1 - w0; wrk_s = wu + wsys
                noise0 = 100 * (c - on0) / hz / w
                noise1 = 100 * ((l - ngx) / hz - wrk_s) / w
                printf "%.0f %.1f %.0f %.0f %.0f\n", 100 * p / hz / w, 1e6 * p / hz / n,
                    100 * l / hz / w, noise0 < 0 ? 0 : noise0, noise1 < 0 ? 0 : noise1 }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$s" "$rps" "$p50" "$p99" \
            "${non2xx:-0}" "$cpu" "$us" "$load" "$noise0" "$noise1" >>"$RESULTS"
        log "round $round $(printf '%-14s' "$s") $rps req/s  p50 $p50 ms  p99 $p99 ms  non-2xx ${non2xx:-0}  CPU $cpu% ($us us/req)  load CPU $load%  noise $noise0%/$noise1%"
    done
done

# --- (h) summary --------------------------------------------------------------
if [[ -n ${WXGATE_BIN:-} ]]; then
    what="wxgate $WXGATE_BIN"
else
    what="wxgate $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+uncommitted')"
fi
if [[ -n ${WXGATE_B:-} ]]; then what="$what (wxgate-b: $WXGATE_B)"; fi
{
    echo
    echo "$what, $(echo "$HAPROXY_VERSION" | cut -d' ' -f1,3), $(nginx -v 2>&1 | cut -d' ' -f3), wrk -t1 -c$CONNS -d$DURATION, $RUNS rounds"
    echo "$(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(date -u '+%Y-%m-%d %H:%M UTC'), $(uptime | sed 's/.*load/load/')"
    echo "median [min..max] over the rounds; \"at 100%\" = 1e6 / median CPU us/req: the req/s the server"
    echo "would reach on a whole CPU at that cost (the fair figure when the load side is the limit)"
    fmt='%-16s %-26s %-22s %-24s %-14s %-20s %-10s %-14s %-12s %-12s\n'
    # shellcheck disable=SC2059
    printf "$fmt" scenario "req/s" "p50 ms" "p99 ms" "server CPU %" "CPU us/req" "at 100%" "load CPU %" \
        "noise0 %" "noise1 %"
    stat() { # stat SCENARIO COLUMN: median [min..max]
        awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s {print $c}' "$RESULTS" | sort -g |
            awk '{v[NR] = $1} END {
                m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "%s [%s..%s]", m, v[1], v[NR] }'
    }
    for s in $SCENARIOS; do
        # shellcheck disable=SC2059
        us=$(stat "$s" 8)
        printf "$fmt" "$s" "$(stat "$s" 3)" "$(stat "$s" 4)" "$(stat "$s" 5)" "$(stat "$s" 7)" \
            "$us" "$(awk -v u="${us%% *}" 'BEGIN { printf "%.0f", 1e6 / u }')" "$(stat "$s" 9)" \
            "$(stat "$s" 10)" "$(stat "$s" 11)"
    done
    echo
    # Memory: resident set now and at its peak, after all the load above.
    rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %d MiB  ", $1, $2 / 1024}' "/proc/$1/status"; }
    echo "memory after the run: wxgate $(rss "$WX_PID")| haproxy $(rss "$HA_PID")"
    if [[ -f $TMP/redis-calls.txt ]]; then
        echo
        echo "wxgate-redis, Redis INFO commandstats:"
        cat "$TMP/redis-calls.txt"
    fi
    echo
    echo "raw rounds:"
    column -t -s$'\t' "$RESULTS"
} | tee "$TMP/summary.txt"
if [[ -n ${OUT:-} ]]; then cp "$TMP/summary.txt" "$OUT"; fi
