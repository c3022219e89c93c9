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
set -euo pipefail
STORES=${STORES:-"memory redis"}
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
