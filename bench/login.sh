#!/usr/bin/env bash
# Login stays flat: over a million logins in a row against wxgate (memory
# store, then Redis store), each with a code never used before and a distinct
# openid from the mock WeChat. The rate of the first WINDOW seconds (the first
# ~100,000 logins) is compared with the rate of WINDOW seconds once TOTAL
# logins have been made, and the resident memory of wxgate (and of
# redis-server) is reported along the way.
#
#   bash bench/login.sh
#   SKIP_BUILD=1 TOTAL=1000000 WINDOW=6 STORES="memory redis" bash bench/login.sh
#
# PAIRED=1 (memory store) takes the machine's drift out of the comparison: a
# second wxgate of the same binary is started beside the first; the first
# makes TOTAL logins, the second only WARM seconds of them (its maps just
# full), then ROUNDS short windows alternate between the two. Both states
# are measured in the same minute, so a machine that slows over a minute
# (other tenants, clock boost) slows both alike:
#
#   SKIP_BUILD=1 PAIRED=1 bash bench/login.sh
set -euo pipefail
STORES=${STORES:-"memory redis"}
if [[ -n ${PAIRED:-} ]]; then
    STORES=memory
    export WXGATE_B=${WXGATE_B:-${WXGATE_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/wxgate}}
fi
SCENARIOS="login-wxgate login-wxgate-redis" source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOTAL=${TOTAL:-1000000}
WINDOW=${WINDOW:-6}
FILL=${FILL:-20}
# Seconds of logins before the first window (0: it starts from empty maps).
# With WARM, the first window is taken once the memory store's maps are
# full (100,000 sessions): what is left is what grows with the logins made.
WARM=${WARM:-0}

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# chunk SCENARIO SECONDS [PID...]: prints the logins made, req/s, non-2xx
# answers, then each PID's CPU µs per login over the chunk.
# (wrk runs for a duration; a script cannot end it early.)
chunk() {
    local out=$TMP/login-$1-$RANDOM.txt s=$1 d=$2 p
    shift 2
    local -a t0=()
    for p in "$@"; do t0+=("$(cpu_ticks "$p")"); done
    run_wrk "$s" "${d}s" "$out"
    local line i=0
    line=$(awk '/requests in/ {n = $1} /^Requests\/sec:/ {r = $2} /Non-2xx/ {e = $NF}
        END {printf "%d %s %d", n, r, e + 0}' "$out")
    local n=${line%% *}
    for p in "$@"; do
        line+=" $(awk -v a="${t0[$i]}" -v b="$(cpu_ticks "$p")" -v n="$n" -v hz="$HZ" \
            'BEGIN {printf "%.1f", (n > 0) ? (b - a) * 1e6 / hz / n : 0}')"
        i=$((i + 1))
    done
    echo "$line"
}
# paired: the rounds of PAIRED=1 (see the top), then exit.
paired() {
    local rounds=${ROUNDS:-5} made=0 n e i warm=${WARM:-8}
    ((warm > 0)) || warm=8
    # The first wxgate's own early window too, as the sequential run takes
    # it: what a minute of the machine's drift does to that comparison.
    local early early_cpu
    read -r made _ _ < <(chunk login-wxgate "$warm")
    read -r n early _ early_cpu < <(chunk login-wxgate "$WINDOW" "$WX_PID")
    made=$((made + n))
    log "early window (maps just full): $early/s, $early_cpu µs"
    while ((made < TOTAL)); do
        read -r n _ e < <(chunk login-wxgate "$FILL")
        made=$((made + n))
        log "turned over: $made logins, RSS $(rss_mib "$WX_PID") MiB"
    done
    local full
    read -r full _ _ < <(chunk login-wxgate-b "$warm")
    log "just full: $full logins, RSS $(rss_mib "$WXB_PID") MiB"
    local -a a_rate=() b_rate=() a_cpu=() b_cpu=()
    local r c
    for ((i = 0; i < rounds; i++)); do
        read -r n r e c < <(chunk login-wxgate-b "$WINDOW" "$WXB_PID")
        b_rate+=("$r") b_cpu+=("$c")
        read -r n r e c < <(chunk login-wxgate "$WINDOW" "$WX_PID")
        a_rate+=("$r") a_cpu+=("$c")
        log "round $((i + 1)): just full ${b_rate[-1]}/s ${b_cpu[-1]} µs, turned over ${a_rate[-1]}/s ${a_cpu[-1]} µs"
    done
    median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
    {
        echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), memory store, $rounds alternated rounds of ${WINDOW}s, wrk -t1 -c$CONNS"
        printf '%-34s %12s %12s %s\n' state "req/s (med)" "µs/login" "rounds (µs/login)"
        printf '%-34s %12s %12s %s\n' "just full ($full logins, then rounds)" "$(median "${b_rate[@]}")" "$(median "${b_cpu[@]}")" "${b_cpu[*]}"
        printf '%-34s %12s %12s %s\n' "after $made logins" "$(median "${a_rate[@]}")" "$(median "${a_cpu[@]}")" "${a_cpu[*]}"
        echo "sequential, as without PAIRED: the first wxgate's early window $early/s, $early_cpu µs; ratio req/s $(awk -v a="$(median "${a_rate[@]}")" -v b="$early" 'BEGIN {printf "%.2f", a / b}')"
        echo "ratio (turned over / just full): req/s $(awk -v a="$(median "${a_rate[@]}")" -v b="$(median "${b_rate[@]}")" 'BEGIN {printf "%.2f", a / b}'), CPU per login $(awk -v a="$(median "${a_cpu[@]}")" -v b="$(median "${b_cpu[@]}")" 'BEGIN {printf "%.2f", b / a}') (1.00: flat; below: slower after the logins)"
    } | tee "$TMP/login-summary.txt"
    if [[ -n ${OUT:-} ]]; then cp "$TMP/login-summary.txt" "$OUT"; fi
    exit 0
}
[[ -n ${PAIRED:-} ]] && paired

fmt='%-7s %-28s %-34s %6s %14s %14s %10s %10s %10s %8s\n'
{
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), wrk -t1 -c$CONNS, $(nproc) CPUs, wxgate on CPU $PROXY_CPU"
    # shellcheck disable=SC2059
    printf "$fmt" store "first ${WINDOW}s: logins, req/s" "after $TOTAL: logins, req/s" ratio \
        "wxgate µs 1/2" "redis µs 1/2" "RSS 1 MiB" "RSS 2 MiB" "redis MiB" non-2xx
} >"$TMP/login-summary.txt"
for store in $STORES; do
    case $store in
    memory) s=login-wxgate pid=$WX_PID pids=("$WX_PID") ;;
    redis) s=login-wxgate-redis pid=$WXR_PID pids=("$WXR_PID" "$REDIS_PID") ;;
    *) die "unknown store $store" ;;
    esac
    warm=0
    if ((WARM > 0)); then
        read -r warm _ _ < <(chunk "$s" "$WARM")
        log "$store: $warm logins before the first window"
    fi
    # CPU per login in the two windows: wxgate's own, and redis-server's.
    read -r n1 first errors wx1 rd1 < <(chunk "$s" "$WINDOW" "${pids[@]}")
    n1=$((warm + n1))
    rss1=$(rss_mib "$pid")
    log "$store: logins $((warm + 1))..$n1 at $first/s, RSS $rss1 MiB"
    made=$n1
    while ((made < TOTAL)); do
        read -r n _ e < <(chunk "$s" "$FILL")
        made=$((made + n)) errors=$((errors + e))
        log "$store: $made logins, RSS $(rss_mib "$pid") MiB"
    done
    read -r n2 last e wx2 rd2 < <(chunk "$s" "$WINDOW" "${pids[@]}")
    errors=$((errors + e))
    rss2=$(rss_mib "$pid")
    log "$store: logins $((made + 1))..$((made + n2)) at $last/s, RSS $rss2 MiB"
    redis_rss=-
    [[ $store == redis ]] && redis_rss=$(rss_mib "$REDIS_PID")
    # shellcheck disable=SC2059
    printf "$fmt" "$store" "$((warm + 1))..$n1, $first" "$((made + 1))..$((made + n2)), $last" \
        "$(awk -v a="$first" -v b="$last" 'BEGIN {printf "%.2f", b / a}')" \
        "$wx1 / $wx2" "${rd1:--} / ${rd2:--}" "$rss1" "$rss2" "$redis_rss" "$errors" >>"$TMP/login-summary.txt"
done
cat "$TMP/login-summary.txt"
if [[ -n ${OUT:-} ]]; then cp "$TMP/login-summary.txt" "$OUT"; fi
