# Shared by bench/run.sh and bench/profile.sh; source it, do not run it.
#
# Installs the tools if missing, builds wxgate, starts nginx (upstream), wxgate
# and HAProxy on free 127.0.0.1 ports, mints the tokens and checks that both
# proxies really enforce them. Everything it starts is stopped on exit.
# Sets: WXGATE UP_PORT WX_PORT HA_PORT NGINX_PID WX_PID HA_PID TOKEN BAD_TOKEN TMP
#       (and WXB_PORT WXB_PID when WXGATE_B names a second binary to compare)
# Defines: log die scenario proxy_pid run_wrk cpu_ticks cpu_busy to_ms

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SCENARIOS=${SCENARIOS:-"direct wxgate haproxy wxgate-401 wxgate-public haproxy-401 pingora"}
WXGATE=${WXGATE_BIN:-$ROOT/target/release/wxgate}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FAIL: %s\n' "$*" >&2; exit 1; }

# --- (a) tools ---------------------------------------------------------------
need_pkgs=()
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v python3 >/dev/null || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${need_pkgs[@]}" >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y "${need_pkgs[@]}" >/dev/null; }
    # Debian's postinst may start the packaged services; we use our own instances.
    for svc in haproxy nginx; do
        if command -v service >/dev/null; then service "$svc" stop >/dev/null 2>&1 || true; fi
    done
fi
HAPROXY_VERSION=$(haproxy -v | sed -n 1p)
[[ $HAPROXY_VERSION == *"version 2.6."* ]] || log "warning: not HAProxy 2.6: $HAPROXY_VERSION"

# --- (b) build ---------------------------------------------------------------
FLOOR=$ROOT/target/release/examples/pingora_floor
if [[ -z ${SKIP_BUILD:-} && -z ${WXGATE_BIN:-} ]]; then
    log "cargo build --release --locked --bin wxgate --example pingora_floor"
    cargo build --release --locked --bin wxgate --example pingora_floor
fi
[[ -x $WXGATE ]] || die "$WXGATE is missing"

# --- temp dir, processes, cleanup ---------------------------------------------
TMP=$(mktemp -d /tmp/wxgate-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${KEEP:-} ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until `curl URL` answers with any HTTP status.
wait_http() {
    local url=$1 name=$2 pid=$3 i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "$name exited; see $TMP/$name.log"
        if curl -s -o /dev/null "$url"; then return 0; fi
        sleep 0.1
    done
    die "$name does not answer on $url"
}

UP_PORT=$(free_port)
MOCK_PORT=$(free_port)
WX_PORT=$(free_port)
HA_PORT=$(free_port)
HAL_PORT=$(free_port)
# TLS listeners (one certificate for both proxies) when a scenario needs them.
TLS_NEEDED=
[[ " $SCENARIOS " == *-tls* || " $SCENARIOS " == *-h2* ]] && TLS_NEEDED=1
WXT_PORT=$(free_port)
HAT_PORT=$(free_port)
# One secret for both proxies (hex, so it needs no quoting anywhere).
WXGATE_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export WXGATE_JWT_SECRET
WXGATE_WECHAT_SECRET=bench-app-secret
export WXGATE_WECHAT_SECRET
APPID=wx0123456789abcdef
ISSUER=wxgate
AUDIENCE=bench

# --- (c) upstream: nginx, one worker, no master, no logs ----------------------
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    default_type text/plain;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { return 200 "ok\n"; }
        # For the correctness checks: what identity did the upstream receive?
        location = /whoami { return 200 "openid=\$http_x_openid\n"; }
        # The backend's login hook (scenario login-wxgate-hook): a fixed answer.
        location = /hook {
            default_type application/json;
            return 200 '{"uid":"u-bench","roles":["user"],"claims":{"plan":"free"}}';
        }
    }
    # Mock WeChat: every jscode2session call answers at once, each with its own
    # openid (the request id).
    server {
        listen 127.0.0.1:$MOCK_PORT;
        location = /sns/jscode2session {
            default_type application/json;
            return 200 '{"openid":"o\$request_id","session_key":"tiihtNczf5v6AKRyjwEUhQ==","unionid":"u\$request_id"}';
        }
    }
}
EOF
taskset -c "$LOAD_CPU" nginx -p "$TMP/nginx" -e "$TMP/nginx.log" -c "$TMP/nginx.conf" \
    >>"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
NGINX_PID=$!
wait_http "http://127.0.0.1:$UP_PORT/" nginx "$NGINX_PID"

# --- (d) wxgate: one thread, "/" requires a token, "/public/" for reference ---
if [[ -n $TLS_NEEDED ]]; then
    command -v openssl >/dev/null || die "openssl is missing"
    # One P-256 certificate for both proxies (ECDSA: the usual choice today);
    # HAProxy is held to the TLS 1.3 suite rustls picks (AES-128-GCM), which
    # OpenSSL would otherwise trade for AES-256-GCM.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$TMP/tls-key.pem" -out "$TMP/tls-cert.pem" 2>/dev/null
    cat "$TMP/tls-cert.pem" "$TMP/tls-key.pem" >"$TMP/tls-combined.pem"
fi
cat >"$TMP/wxgate.toml" <<EOF
[server]
listen = "127.0.0.1:$WX_PORT"
threads = 1
# Every load generator connects from 127.0.0.1: no per-IP cap here.
max_connections = 20000
max_connections_per_ip = 20000
$( [[ -n $TLS_NEEDED ]] && printf 'tls_listen = "127.0.0.1:%s"\ntls_cert = "%s"\ntls_key = "%s"\n' "$WXT_PORT" "$TMP/tls-cert.pem" "$TMP/tls-key.pem" )

[jwt]
secret_env = "WXGATE_JWT_SECRET"
issuer = "$ISSUER"
audience = "$AUDIENCE"

[wechat]
appid = "$APPID"
secret_env = "WXGATE_WECHAT_SECRET"
api_base = "http://127.0.0.1:$MOCK_PORT"

[[routes]]
prefix = "/public/"
upstreams = ["127.0.0.1:$UP_PORT"]
auth = "public"

[[routes]]
prefix = "/"
upstreams = ["127.0.0.1:$UP_PORT"]
auth = "required"
EOF
# Whole sections appended to wxgate's config (wxgate-b's too, which copies it),
# e.g. WXGATE_TOML=$'[sessions]\nmax_per_user = 3'.
[[ -n ${WXGATE_TOML:-} ]] && printf '\n%s\n' "$WXGATE_TOML" >>"$TMP/wxgate.toml"
"$WXGATE" check -c "$TMP/wxgate.toml" >/dev/null
RUST_LOG=warn taskset -c "$PROXY_CPU" "$WXGATE" run -c "$TMP/wxgate.toml" \
    >"$TMP/wxgate.log" 2>&1 &
PIDS+=($!)
WX_PID=$!
wait_http "http://127.0.0.1:$WX_PORT/healthz" wxgate "$WX_PID"

# Optional A/B: a second wxgate binary (WXGATE_B=/path), same config on its own
# port, measured in the same rounds as scenarios wxgate-b, wxgate-b-401, wxgate-b-public.
WXB_PID=
if [[ -n ${WXGATE_B:-} ]]; then
    WXB_PORT=$(free_port)
    sed -e "s/^listen = .*/listen = \"127.0.0.1:$WXB_PORT\"/" -e "/^tls_/d" "$TMP/wxgate.toml" >"$TMP/wxgate-b.toml"
    if [[ -n ${WXGATE_B_SERVER:-} ]]; then
        # Extra [server] lines for wxgate-b, e.g. WXGATE_B_SERVER='http1 = "pingora"'.
        awk -v extra="$WXGATE_B_SERVER" '{print} /^threads = / {print extra}' "$TMP/wxgate-b.toml" \
            >"$TMP/wxgate-b.tmp" && mv "$TMP/wxgate-b.tmp" "$TMP/wxgate-b.toml"
    fi
    if [[ -n ${WXGATE_B_TOML:-} ]]; then
        # Whole sections appended to wxgate-b's config, e.g.
        # WXGATE_B_TOML=$'[sessions]\nmax_per_user = 3'.
        printf '\n%s\n' "$WXGATE_B_TOML" >>"$TMP/wxgate-b.toml"
    fi
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$WXGATE_B" run -c "$TMP/wxgate-b.toml" \
        >"$TMP/wxgate-b.log" 2>&1 &
    PIDS+=($!)
    WXB_PID=$!
    wait_http "http://127.0.0.1:$WXB_PORT/healthz" wxgate-b "$WXB_PID"
fi

# Pingora's own server with an empty proxy: the floor under wxgate's figures
# (examples/pingora_floor.rs). Only when the scenario is asked for.
# The Redis store: a redis-server of our own and a second wxgate using it,
# when a scenario needs them.
WXR_PID= REDIS_PID=
if [[ " $SCENARIOS " == *redis* ]]; then
    command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
    REDIS_PORT=$(free_port)
    taskset -c "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no --maxmemory-policy noeviction >"$TMP/redis.log" 2>&1 &
    PIDS+=($!)
    REDIS_PID=$!
    for _ in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
        kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited; see $TMP/redis.log"
        sleep 0.1
    done
    WXR_PORT=$(free_port)
    sed -e "s/^listen = .*/listen = \"127.0.0.1:$WXR_PORT\"/" -e "/^tls_/d" "$TMP/wxgate.toml" >"$TMP/wxgate-redis.toml"
    printf '\n[store]\nkind = "redis"\nurl = "redis://127.0.0.1:%s/"\n' "$REDIS_PORT" \
        >>"$TMP/wxgate-redis.toml"
    "$WXGATE" check -c "$TMP/wxgate-redis.toml" >/dev/null
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$WXGATE" run -c "$TMP/wxgate-redis.toml" \
        >"$TMP/wxgate-redis.log" 2>&1 &
    PIDS+=($!)
    WXR_PID=$!
    wait_http "http://127.0.0.1:$WXR_PORT/healthz" wxgate-redis "$WXR_PID"
fi

# A wxgate with a login hook (nginx answers it at once), for the hook's
# added cost on /wx/login (scenario login-wxgate-hook).
WXH_PID=
if [[ " $SCENARIOS " == *" login-wxgate-hook "* ]]; then
    WXH_PORT=$(free_port)
    WXGATE_HOOK_SECRET=bench-hook-secret-0123456789
    export WXGATE_HOOK_SECRET
    sed -e "s/^listen = .*/listen = \"127.0.0.1:$WXH_PORT\"/" -e "/^tls_/d" "$TMP/wxgate.toml" >"$TMP/wxgate-hook.toml"
    printf '\n[login.hook]\nurl = "http://127.0.0.1:%s/hook"\nsecret_env = "WXGATE_HOOK_SECRET"\nclaims = { plan = "X-User-Plan" }\n' \
        "$UP_PORT" >>"$TMP/wxgate-hook.toml"
    "$WXGATE" check -c "$TMP/wxgate-hook.toml" >/dev/null
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$WXGATE" run -c "$TMP/wxgate-hook.toml" \
        >"$TMP/wxgate-hook.log" 2>&1 &
    PIDS+=($!)
    WXH_PID=$!
    wait_http "http://127.0.0.1:$WXH_PORT/healthz" wxgate-hook "$WXH_PID"
fi

# The hand-written Flask login (bench/flask_login.py), one gunicorn worker.
FLASK_PID=
if [[ " $SCENARIOS " == *" login-flask "* ]]; then
    [[ -x /usr/bin/gunicorn ]] && /usr/bin/python3 -c 'import flask, jwt, requests' 2>/dev/null ||
        { log "installing gunicorn python3-flask python3-jwt python3-requests"
          DEBIAN_FRONTEND=noninteractive apt-get install -y gunicorn python3-flask python3-jwt \
              python3-requests >/dev/null; }
    FLASK_PORT=$(free_port)
    WECHAT_API_BASE="http://127.0.0.1:$MOCK_PORT" WX_APPID=$APPID WX_SECRET=$WXGATE_WECHAT_SECRET \
        JWT_SECRET=$WXGATE_JWT_SECRET taskset -c "$PROXY_CPU" /usr/bin/python3 /usr/bin/gunicorn \
        -w 1 -b "127.0.0.1:$FLASK_PORT" --chdir "$ROOT/bench" flask_login:app \
        >"$TMP/flask.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$FLASK_PORT/" flask "$!"
    FLASK_PID=$(pgrep -P "$!" | head -1) # the worker, not the master
    [[ -n $FLASK_PID ]] || die "no gunicorn worker; see $TMP/flask.log"
fi

PF_PID=
if [[ " $SCENARIOS " == *" pingora "* ]]; then
    [[ -x $FLOOR ]] || die "$FLOOR is missing (cargo build --release --example pingora_floor)"
    PF_PORT=$(free_port)
    taskset -c "$PROXY_CPU" "$FLOOR" "127.0.0.1:$PF_PORT" "127.0.0.1:$UP_PORT" \
        >"$TMP/pingora.log" 2>&1 &
    PIDS+=($!)
    PF_PID=$!
    wait_http "http://127.0.0.1:$PF_PORT/" pingora "$PF_PID"
fi

# --- (e) HAProxy 2.6: the same check with http-request rules ------------------
# 401 body and header as wxgate sends them.
deny401="return status 401 content-type application/json string '{\"error\":\"token_invalid\",\"message\":\"the token is not valid\"}' hdr WWW-Authenticate 'Bearer realm=\"wxgate\", error=\"invalid_token\", error_description=\"the token is not valid\"'"
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9500
    # no logging, like RUST_LOG=warn on wxgate

defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always

frontend fe
    bind 127.0.0.1:$HA_PORT
$( [[ -n $TLS_NEEDED ]] && echo "    bind 127.0.0.1:$HAT_PORT ssl crt $TMP/tls-combined.pem alpn h2,http/1.1 ciphersuites TLS_AES_128_GCM_SHA256" )
    # Token: exactly one Authorization header, Bearer scheme.
    http-request $deny401 if { req.hdr_cnt(authorization) gt 1 }
    http-request set-var(txn.bearer) http_auth_bearer
    http-request $deny401 unless { var(txn.bearer) -m found }
    http-request $deny401 if { var(txn.bearer),length gt 4096 }
    # Pinned algorithm, HS256 signature with the shared secret.
    http-request $deny401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str HS256 }
    http-request $deny401 unless { var(txn.bearer),jwt_verify("HS256","\${WXGATE_JWT_SECRET}") -m int 1 }
    # Claims: exp (required, 30 s leeway), nbf (when present), iss, aud, sub.
    http-request set-var(txn.now) date()
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request $deny401 unless { var(txn.exp),add(30),sub(txn.now) gt 0 }
    http-request set-var(txn.nbf) var(txn.bearer),jwt_payload_query('\$.nbf','int')
    http-request $deny401 if { var(txn.nbf),sub(txn.now) gt 30 }
    http-request $deny401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $ISSUER }
    http-request $deny401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str $AUDIENCE }
    http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
    http-request $deny401 unless { var(txn.sub) -m len gt 0 }
    # Header hygiene: spoofed identity (any case, _ or -), Authorization, X-Forwarded-*.
    http-request del-header ^x[-_](openid|unionid|wx[-_]appid)\$ -m reg
    http-request del-header ^(x[-_]forwarded[-_](for|proto|host)|forwarded)\$ -m reg
    http-request del-header authorization
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http unless { ssl_fc }
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    # Identity from the verified token.
    http-request set-header X-OpenID %[var(txn.sub)]
    default_backend up

# The lean rules: Bearer, alg, signature, exp; X-OpenID stripped, then set.
frontend fe_lean
    bind 127.0.0.1:$HAL_PORT
    http-request set-var(txn.bearer) http_auth_bearer
    http-request $deny401 unless { var(txn.bearer) -m found }
    http-request $deny401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str HS256 }
    http-request $deny401 unless { var(txn.bearer),jwt_verify("HS256","\${WXGATE_JWT_SECRET}") -m int 1 }
    http-request set-var(txn.now) date()
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request $deny401 unless { var(txn.exp),add(30),sub(txn.now) gt 0 }
    http-request del-header x-openid
    http-request set-header X-OpenID %[var(txn.bearer),jwt_payload_query('\$.sub')]
    default_backend up

backend up
    server nginx 127.0.0.1:$UP_PORT
EOF
haproxy -c -q -f "$TMP/haproxy.cfg" || die "haproxy config invalid ($TMP/haproxy.cfg)"
taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
HA_PID=$!
wait_http "http://127.0.0.1:$HA_PORT/" haproxy "$HA_PID"

# --- (f) tokens ---------------------------------------------------------------
TOKEN=$("$WXGATE" token issue -c "$TMP/wxgate.toml" --openid obench | tail -1)
[[ $TOKEN =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] || die "unexpected token: $TOKEN"
# A token with one signature character changed: the 401 path. (Not the last
# character: its low bits are padding, which some decoders ignore.)
sig_char=${TOKEN: -10:1}
BAD_TOKEN="${TOKEN:0:${#TOKEN}-10}$([[ $sig_char == A ]] && echo B || echo A)${TOKEN: -9}"

# Hand-made HS256 tokens that are correctly signed but must be refused.
forge() { # forge HEADER_JSON CLAIMS_JSON
    python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, os, sys
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
msg = b64(sys.argv[1].encode()) + b"." + b64(sys.argv[2].encode())
key = os.environ["WXGATE_JWT_SECRET"].encode()
alg = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}['HS512' if 'HS512' in sys.argv[1] else 'HS256']
print((msg + b"." + b64(hmac.new(key, msg, alg).digest())).decode())
PY
}
NOW=$(date +%s)
H256='{"alg":"HS256","typ":"JWT"}'
claims() { # claims EXP ISS AUD
    printf '{"sub":"forged","iss":"%s","aud":"%s","iat":%d,"exp":%d}' "$2" "$3" "$NOW" "$1"
}
GOOD_FORGED=$(forge "$H256" "$(claims $((NOW + 600)) $ISSUER $AUDIENCE)")
declare -A REFUSED=(
    [bad-signature]=$BAD_TOKEN
    [expired]=$(forge "$H256" "$(claims $((NOW - 600)) $ISSUER $AUDIENCE)")
    [wrong-iss]=$(forge "$H256" "$(claims $((NOW + 600)) other $AUDIENCE)")
    [wrong-aud]=$(forge "$H256" "$(claims $((NOW + 600)) $ISSUER other)")
    [hs512]=$(forge '{"alg":"HS512","typ":"JWT"}' "$(claims $((NOW + 600)) $ISSUER $AUDIENCE)")
    [alg-none]="$(python3 -c 'import base64,sys; b=lambda s: base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode(); print(b("{\"alg\":\"none\"}")+"."+b(sys.argv[1])+".")' "$(claims $((NOW + 600)) $ISSUER $AUDIENCE)")"
    [no-sub]=$(forge "$H256" "{\"iss\":\"$ISSUER\",\"aud\":\"$AUDIENCE\",\"exp\":$((NOW + 600))}")
)

# --- correctness: both proxies really check the token -------------------------
status() { # status URL [curl args...]
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' "$@" "$url"
}
expect() { # expect WANT NAME GOT
    [[ $3 == "$1" ]] || die "$2: expected $1, got $3"
}
checked=("wxgate http://127.0.0.1:$WX_PORT" "haproxy http://127.0.0.1:$HA_PORT")
[[ -n $WXB_PID ]] && checked+=("wxgate-b http://127.0.0.1:$WXB_PORT")
[[ -n $WXR_PID ]] && checked+=("wxgate-redis http://127.0.0.1:$WXR_PORT")
[[ -n $TLS_NEEDED ]] && checked+=("wxgate-tls https://127.0.0.1:$WXT_PORT" "haproxy-tls https://127.0.0.1:$HAT_PORT")
for p in "${checked[@]}"; do
    read -r name url <<<"$p"
    tls=()
    [[ $url == https:* ]] && tls=(-k)
    expect 200 "$name valid token" "$(status "$url/" "${tls[@]}" -H "Authorization: Bearer $TOKEN")"
    expect 200 "$name forged-but-valid token" "$(status "$url/" "${tls[@]}" -H "Authorization: Bearer $GOOD_FORGED")"
    expect 401 "$name no token" "$(status "$url/" "${tls[@]}")"
    for why in "${!REFUSED[@]}"; do
        expect 401 "$name $why" "$(status "$url/" "${tls[@]}" -H "Authorization: Bearer ${REFUSED[$why]}")"
    done
    who=$(curl -s "${tls[@]}" "$url/whoami" -H "Authorization: Bearer $TOKEN" -H 'X-OpenID: spoof' -H 'X_OpenID: spoof')
    expect "openid=obench" "$name injected X-OpenID" "$who"
    if [[ $url == https:* ]]; then
        who=$(curl -s --http2 -k "$url/whoami" -H "Authorization: Bearer $TOKEN" -H 'X-OpenID: spoof')
        expect "openid=obench" "$name over HTTP/2" "$who"
    fi
done
# The lean HAProxy rules check the signature and exp only.
url="http://127.0.0.1:$HAL_PORT"
expect 200 "haproxy-lean valid token" "$(status "$url/" -H "Authorization: Bearer $TOKEN")"
expect 401 "haproxy-lean no token" "$(status "$url/")"
for why in bad-signature expired hs512 alg-none; do
    expect 401 "haproxy-lean $why" "$(status "$url/" -H "Authorization: Bearer ${REFUSED[$why]}")"
done
expect "openid=obench" "haproxy-lean injected X-OpenID" \
    "$(curl -s "$url/whoami" -H "Authorization: Bearer $TOKEN" -H 'X-OpenID: spoof')"
expect 200 "wxgate public route" "$(status "http://127.0.0.1:$WX_PORT/public/x")"
log "correctness: the proxies answer 200 with the token, 401 without it or with" \
    "a bad one (${!REFUSED[*]}), and set X-OpenID from sub"

# Every login target exchanges a fresh code for a token carrying the openid
# the mock WeChat gave, and refuses a request without a code.
logins=("wxgate $WX_PORT")
[[ -n $WXR_PID ]] && logins+=("wxgate-redis $WXR_PORT")
[[ -n $WXH_PID ]] && logins+=("wxgate-hook $WXH_PORT")
[[ -n $WXB_PID ]] && logins+=("wxgate-b $WXB_PORT")
[[ -n $FLASK_PID ]] && logins+=("flask $FLASK_PORT")
for p in "${logins[@]}"; do
    read -r name port <<<"$p"
    body=$(curl -s -X POST "http://127.0.0.1:$port/wx/login" -H 'Content-Type: application/json' \
        -d "{\"code\":\"check-$RANDOM\"}")
    login_token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$body") ||
        die "$name login: no token in $body"
    who=$(curl -s "http://127.0.0.1:$WX_PORT/whoami" -H "Authorization: Bearer $login_token")
    [[ $who =~ ^openid=o[0-9a-f]{32}$ ]] || die "$name login: the token gives $who"
    if [[ $name == wxgate-hook ]]; then
        [[ $body == *'"uid":"u-bench"'* ]] || die "$name login: no uid from the hook in $body"
    fi
    expect 400 "$name login without a code" "$(status "http://127.0.0.1:$port/wx/login" -X POST \
        -H 'Content-Type: application/json' -d '{}')"
done
log "correctness: login on ${logins[*]%% *} gives a token for the mock's openid"

# --- load helpers --------------------------------------------------------------
# URL and extra wrk args of each scenario.
scenario() {
    case $1 in
    direct) echo "http://127.0.0.1:$UP_PORT/" ;;
    wxgate) echo "http://127.0.0.1:$WX_PORT/ Authorization: Bearer $TOKEN" ;;
    haproxy) echo "http://127.0.0.1:$HA_PORT/ Authorization: Bearer $TOKEN" ;;
    wxgate-401) echo "http://127.0.0.1:$WX_PORT/ Authorization: Bearer $BAD_TOKEN" ;;
    haproxy-401) echo "http://127.0.0.1:$HA_PORT/ Authorization: Bearer $BAD_TOKEN" ;;
    wxgate-public) echo "http://127.0.0.1:$WX_PORT/public/x" ;;
    wxgate-b) echo "http://127.0.0.1:$WXB_PORT/ Authorization: Bearer $TOKEN" ;;
    wxgate-b-401) echo "http://127.0.0.1:$WXB_PORT/ Authorization: Bearer $BAD_TOKEN" ;;
    wxgate-b-public) echo "http://127.0.0.1:$WXB_PORT/public/x" ;;
    pingora) echo "http://127.0.0.1:$PF_PORT/" ;;
    haproxy-lean) echo "http://127.0.0.1:$HAL_PORT/ Authorization: Bearer $TOKEN" ;;
    wxgate-tls | wxgate-tls-new | wxgate-h2) echo "https://127.0.0.1:$WXT_PORT/ Authorization: Bearer $TOKEN" ;;
    haproxy-tls | haproxy-tls-new | haproxy-h2) echo "https://127.0.0.1:$HAT_PORT/ Authorization: Bearer $TOKEN" ;;
    wxgate-redis) echo "http://127.0.0.1:$WXR_PORT/ Authorization: Bearer $TOKEN" ;;
    login-wxgate) echo "http://127.0.0.1:$WX_PORT/wx/login" ;;
    login-wxgate-redis) echo "http://127.0.0.1:$WXR_PORT/wx/login" ;;
    login-wxgate-hook) echo "http://127.0.0.1:$WXH_PORT/wx/login" ;;
    login-wxgate-b) echo "http://127.0.0.1:$WXB_PORT/wx/login" ;;
    login-flask) echo "http://127.0.0.1:$FLASK_PORT/wx/login" ;;
    *) die "unknown scenario $1" ;;
    esac
}
proxy_pid() {
    case $1 in
    wxgate-b* | login-wxgate-b) echo "$WXB_PID" ;;
    wxgate-redis | login-wxgate-redis) echo "$WXR_PID" ;;
    login-wxgate-hook) echo "$WXH_PID" ;;
    wxgate* | login-wxgate) echo "$WX_PID" ;;
    login-flask) echo "$FLASK_PID" ;;
    haproxy*) echo "$HA_PID" ;;
    pingora) echo "$PF_PID" ;;
    *) echo "$NGINX_PID" ;;
    esac
}
# CPU time (user+sys, clock ticks) of a process and all its threads.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Busy ticks of one CPU, all processes (user nice system irq softirq steal).
cpu_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
HZ=$(getconf CLK_TCK)

# Login scenarios post a code never used before (bench/login.lua): CODE_PREFIX
# is unique per call (a nanosecond clock: callers may run this in subshells).
run_wrk() { # run_wrk SCENARIO DURATION OUTFILE
    local url header
    read -r url header <<<"$(scenario "$1")"
    if [[ $1 == *-h2 ]]; then
        run_h2load "$url" "$header" "$2" "$3"
        return
    fi
    local args=(-t1 "-c$CONNS" "-d$2" --latency)
    [[ -n $header ]] && args+=(-H "$header")
    # A new TLS connection (a full handshake) for every request.
    [[ $1 == *-tls-new ]] && args+=(-H "Connection: close")
    [[ $1 == login-* ]] && args+=(-s "$ROOT/bench/login.lua")
    CODE_PREFIX="$1-$(date +%s%N)" taskset -c "$LOAD_CPU" wrk "${args[@]}" "$url" >"$3"
}

# HTTP/2 over TLS: h2load, H2_CONNS connections of H2_STREAMS concurrent
# streams each; its summary rewritten in wrk's words for the tables (h2load
# gives no percentiles: p50 is its mean, p99 is left empty).
run_h2load() { # run_h2load URL HEADER DURATION OUTFILE
    command -v h2load >/dev/null || die "h2load is missing (apt-get install nghttp2-client)"
    local raw=$4.h2load
    [[ $4 == /dev/null ]] && raw=$TMP/h2load-warmup.txt
    taskset -c "$LOAD_CPU" h2load -c "${H2_CONNS:-32}" -m "${H2_STREAMS:-10}" -t 1 -D "${3%s}" \
        -H "$2" "$1" >"$raw" 2>&1
    # "finished in 8.01s, 18219.50 req/s, ..." / "requests: N total, N started, N done, ..."
    # / "status codes: N 2xx, ..." / "time for request: min max mean sd +/- sd"
    awk '/^finished in/ {rps = $4}
        /^requests:/ {done = $6}
        /^status codes:/ {ok = $3}
        /^time for request:/ {mean = $6}
        END {
            printf "Requests/sec: %s\n%s requests in\n", rps, done
            printf "Non-2xx or 3xx responses: %d\n", done - ok
            printf "    50%% %s\n", mean
        }' "$raw" >"$4"
}

# wrk latency figures are like 512.00us / 1.23ms / 2.00s: print milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

