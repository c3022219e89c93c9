#!/usr/bin/env bash
# Memory of idle keep-alive connections: N clients each make one
# authenticated request and then stay connected; the proxy's RSS is read
# before and after, for wxgate and for HAProxy 2.6 with the same JWT check.
# Both hold N=HA_N=9000 by default: under a hard limit of 20000 open files
# HAProxy cannot hold 10000 client and 10000 upstream connections, and
# wxgate caps its connections below half the limit (README, "Descriptors").
# The clients come from four loopback addresses (the per-address cap).
# Plain HTTP/1.1 first, then TLS 1.3 (one certificate for both proxies, the
# cipher suite rustls picks), each against freshly started proxies;
# PROTO=http or PROTO=tls runs one of them.
#
#   bash bench/conns.sh
#   N=5000 HA_N=5000 SKIP_BUILD=1 PROTO=tls bash bench/conns.sh
set -euo pipefail
if [[ -z ${PROTO:-} ]]; then
    PROTO=http bash "${BASH_SOURCE[0]}"
    PROTO=tls SKIP_BUILD=1 bash "${BASH_SOURCE[0]}"
    exit
fi
# Client and proxy each need N descriptors (the proxy raises its own limit).
ulimit -n "$(ulimit -Hn)"
SCENARIOS=conns
[[ $PROTO == tls ]] && SCENARIOS="conns wxgate-tls"
SCENARIOS=$SCENARIOS source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${N:-9000}
HA_N=${HA_N:-9000}
for who in wxgate haproxy; do
    case $who/$PROTO in
    wxgate/http) port=$WX_PORT pid=$WX_PID n=$N ;;
    haproxy/http) port=$HA_PORT pid=$HA_PID n=$HA_N ;;
    wxgate/tls) port=$WXT_PORT pid=$WX_PID n=$N ;;
    haproxy/tls) port=$HAT_PORT pid=$HA_PID n=$HA_N ;;
    esac
    printf '%s (%s): ' "$who" "$PROTO"
    python3 "$ROOT/bench/idle_conns.py" 127.0.0.1 "$port" "$n" "$TOKEN" / "$pid" "$PROTO"
done
