#!/usr/bin/env bash
# Run the production topology locally: auth-service and user-service as two processes, user-service
# finding auth-service through AUTH_SERVICE_ADDRESS, with their logs interleaved and prefixed.
# Ctrl-C (or SIGTERM) stops both gracefully; if either exits, the other is stopped too.
#
# Settings (environment): DEV_DATA_DIR (data/dev), AUTH_LISTEN_ADDR (127.0.0.1:50051),
# USER_LISTEN_ADDR (127.0.0.1:8080; port 0 in either picks a free port, and the address each
# service listens on is written to DEV_DATA_DIR/auth-service.addr and user-service.addr), USER_CORS_ALLOWED_ORIGINS (the web example's origin,
# http://127.0.0.1:5173), GRIMOS_DRAIN_GRACE (0s: no balancer sends work to a local system, so
# a stop need not drain), GRIMOS_ADMIN_EMAILS, RUST_LOG, DEV_PROFILE (debug or release),
# DEV_SKIP_BUILD (set: use the binaries already built), DEV_BUILD_ONLY (set: build, then exit),
# and any other service setting, which both processes inherit.
#
# TLS: with GRIMOS_TLS_CERT and GRIMOS_TLS_KEY, both services serve TLS only, and user-service
# calls auth-service at https://$AUTH_LISTEN_ADDR, trusting GRIMOS_TLS_CA, which is then
# required; with it, auth-service also requires the client certificate that user-service
# presents (mutual TLS). user-service asks its own clients for none.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

data=${DEV_DATA_DIR:-data/dev}
profile=${DEV_PROFILE:-debug}
mkdir -p "$data"
export AUTH_LISTEN_ADDR=${AUTH_LISTEN_ADDR:-127.0.0.1:50051}
export USER_LISTEN_ADDR=${USER_LISTEN_ADDR:-127.0.0.1:8080}
export USER_CORS_ALLOWED_ORIGINS=${USER_CORS_ALLOWED_ORIGINS:-http://127.0.0.1:5173,http://localhost:5173}
export AUTH_DATABASE_URL=${AUTH_DATABASE_URL:-sqlite://$data/auth.db}
export USER_DATABASE_URL=${USER_DATABASE_URL:-sqlite://$data/user.db}
export AUTH_SIGNING_KEY_FILE=${AUTH_SIGNING_KEY_FILE:-$data/auth-signing-key.pem}
export GRIMOS_DRAIN_GRACE=${GRIMOS_DRAIN_GRACE:-0s}
if [ -n "${GRIMOS_TLS_CERT:-}" ]; then
    if [ -z "${GRIMOS_TLS_CA:-}" ]; then
        echo "dev: GRIMOS_TLS_CERT is set without GRIMOS_TLS_CA: auth-service would serve TLS, but" \
            "user-service needs GRIMOS_TLS_CA (the CA of auth-service's certificate) to call it;" \
            "set it (auth-service then requires client certificates too), or unset GRIMOS_TLS_CERT" >&2
        exit 2
    fi
    scheme=https
elif [ -n "${GRIMOS_TLS_CA:-}" ]; then
    echo "dev: GRIMOS_TLS_CA is set without GRIMOS_TLS_CERT and GRIMOS_TLS_KEY: auth-service" \
        "requires client certificates only when it serves TLS itself" >&2
    exit 2
else
    scheme=http
fi
# Both processes must share the service credential; keep one per data folder.
if [ -z "${GRIMOS_SERVICE_TOKEN:-}" ]; then
    if [ ! -s "$data/service-token" ]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$data/service-token")
    fi
    GRIMOS_SERVICE_TOKEN=$(cat "$data/service-token")
    export GRIMOS_SERVICE_TOKEN
fi

if [ -z "${DEV_SKIP_BUILD:-}" ]; then
    if [ "$profile" = release ]; then
        cargo build --locked --release -q -p auth-service -p user-service
    else
        cargo build --locked -q -p auth-service -p user-service
    fi
fi
[ -z "${DEV_BUILD_ONLY:-}" ] || exit 0
bin="${CARGO_TARGET_DIR:-target}/$profile"

# Colour the prefixes only on a terminal, as the services do with their own output.
if [ -t 1 ]; then a=$'\e[35mauth |\e[0m '; u=$'\e[36muser |\e[0m '; else a='auth | '; u='user | '; fi
pids=()
stop() {
    trap - INT TERM EXIT
    # user-service first, so its in-flight requests can still reach auth-service.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

# Each service's address as it logs it (`... listening ... addr=HOST:PORT`), written to
# $data/NAME.addr: with port 0 only the service knows its port, and it keeps the socket it
# bound (nothing picks a free port and binds it again later, which another process can race).
rm -f "$data/auth-service.addr" "$data/user-service.addr"
start() { # name prefix binary
    local name=$1 prefix=$2 binary=$3
    # The service's pid is $! (the process substitution only prefixes its lines).
    "$binary" > >(
        while IFS= read -r line; do
            printf '%s%s\n' "$prefix" "$line"
            if [[ ! -e $data/$name.addr && $line == *listening* && $line =~ addr=([^[:space:]]+) ]]; then
                printf '%s\n' "${BASH_REMATCH[1]}" >"$data/$name.addr.tmp"
                mv "$data/$name.addr.tmp" "$data/$name.addr"
            fi
        done
    ) 2>&1 &
    pids+=("$!")
}
# The address service NAME (pid PID) listens on, once it does (it logs it after binding).
address_of() { # name pid
    local name=$1 pid=$2
    for _ in $(seq 600); do
        if [ -s "$data/$name.addr" ]; then
            cat "$data/$name.addr"
            return
        fi
        kill -0 "$pid" 2>/dev/null || { echo "dev: $name exited before it listened" >&2; return 1; }
        sleep 0.05
    done
    echo "dev: $name did not listen within 30 s" >&2
    return 1
}

start auth-service "$a" "$bin/auth-service"
# user-service reaches auth-service lazily, but wait until it listens so the first requests
# succeed (and, with port 0, to learn its address).
auth_addr=$(address_of auth-service "${pids[0]}")
export AUTH_SERVICE_ADDRESS=${AUTH_SERVICE_ADDRESS:-$scheme://$auth_addr}
start user-service "$u" "$bin/user-service"
user_addr=$(address_of user-service "${pids[1]}")
echo "dev: user-service $scheme://$user_addr (HTTP/JSON, gRPC, gRPC-Web), auth-service $scheme://$auth_addr; data in $data; Ctrl-C stops both"
# The first process to exit stops the whole system, with its status.
set +e
wait -n "${pids[@]}"
status=$?
set -e
echo "dev: a service exited (status $status); stopping the other" >&2
exit "$status"
