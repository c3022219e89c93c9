#!/usr/bin/env bash
# Login stays flat: 1,100,000 logins in a row against wxgate (memory store,
# then Redis store), each with a code never used before and a distinct openid
# from the mock WeChat. Compares the rate over logins 1..100,000 with the rate
# over logins 1,000,001..1,100,000, and reports the resident memory of wxgate
# (and of redis-server) along the way.
#
#   bash bench/login.sh
#   SKIP_BUILD=1 TOTAL=1100000 WINDOW=100000 STORES="memory redis" bash bench/login.sh
set -euo pipefail
STORES=${STORES:-"memory redis"}
SCENARIOS="login-wxgate login-wxgate-redis" source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOTAL=${TOTAL:-1100000}
WINDOW=${WINDOW:-100000}
((TOTAL >= 2 * WINDOW)) || die "TOTAL must be at least twice WINDOW"

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# chunk SCENARIO N: N logins; prints req/s and non-2xx.
chunk() {
    local out=$TMP/login-$1-$2-$RANDOM.txt
    STOP_AFTER=$2 run_wrk "$1" 3600s "$out"
    awk '/^Requests\/sec:/ {r = $2} /Non-2xx/ {e = $NF} END {printf "%s %s\n", r, e + 0}' "$out"
}
fmt='%-8s %16s %22s %8s %14s %14s %16s %14s\n'
{
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), wrk -t1 -c$CONNS, $(nproc) CPUs"
    # shellcheck disable=SC2059
    printf "$fmt" store "first $WINDOW/s" "last $WINDOW/s" ratio "RSS first MiB" "RSS last MiB" "redis RSS MiB" non-2xx
} >"$TMP/login-summary.txt"
for store in $STORES; do
    case $store in
    memory) s=login-wxgate pid=$WX_PID ;;
    redis) s=login-wxgate-redis pid=$WXR_PID ;;
    *) die "unknown store $store" ;;
    esac
    read -r first e1 < <(chunk "$s" "$WINDOW")
    rss1=$(rss_mib "$pid")
    log "$store: logins 1..$WINDOW at $first/s, RSS $rss1 MiB"
    read -r _ e2 < <(chunk "$s" $((TOTAL - 2 * WINDOW)))
    read -r last e3 < <(chunk "$s" "$WINDOW")
    rss2=$(rss_mib "$pid")
    log "$store: logins $((TOTAL - WINDOW + 1))..$TOTAL at $last/s, RSS $rss2 MiB"
    redis_rss=-
    [[ $store == redis ]] && redis_rss=$(rss_mib "$REDIS_PID")
    # shellcheck disable=SC2059
    printf "$fmt" "$store" "$first" "$last" "$(awk -v a="$first" -v b="$last" 'BEGIN {printf "%.2f", b / a}')" \
        "$rss1" "$rss2" "$redis_rss" $((e1 + e2 + e3)) >>"$TMP/login-summary.txt"
done
cat "$TMP/login-summary.txt"
if [[ -n ${OUT:-} ]]; then cp "$TMP/login-summary.txt" "$OUT"; fi
