#!/usr/bin/env bash
# Run a command against a fresh, private instance of the whole system (tools/dev.sh: two
# processes, a new data folder, free loopback ports), then stop it. The command sees:
#   USER_SERVICE_URL  http://127.0.0.1:<port>  user-service: HTTP/JSON, gRPC, gRPC-Web
#   AUTH_SERVICE_URL  http://127.0.0.1:<port>  auth-service: gRPC
#   WEB_ORIGIN        http://127.0.0.1:<port>  an origin user-service allows by CORS (for a page)
# With GRIMOS_TLS_CERT and GRIMOS_TLS_KEY (and GRIMOS_TLS_CA, which tools/dev.sh then requires)
# both services serve TLS only, and the two service URLs are https:// ones.
# Usage: tools/with-system.sh COMMAND [ARGS...]; the system's logs go to $WITH_SYSTEM_LOG
# (default: a file in the data folder, printed if the command fails).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

data=$(mktemp -d "${TMPDIR:-/tmp}/grimos-system.XXXXXX")
read -r auth_port user_port web_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
export DEV_DATA_DIR=$data
export AUTH_LISTEN_ADDR=127.0.0.1:$auth_port USER_LISTEN_ADDR=127.0.0.1:$user_port
export WEB_ORIGIN=http://127.0.0.1:$web_port
export USER_CORS_ALLOWED_ORIGINS=$WEB_ORIGIN
scheme=http
[ -z "${GRIMOS_TLS_CERT:-}" ] || scheme=https
export USER_SERVICE_URL=$scheme://127.0.0.1:$user_port AUTH_SERVICE_URL=$scheme://127.0.0.1:$auth_port
log=${WITH_SYSTEM_LOG:-$data/system.log}

# Build first, outside the readiness timeout: a cold checkout takes minutes.
DEV_BUILD_ONLY=1 tools/dev.sh
DEV_SKIP_BUILD=1 tools/dev.sh >"$log" 2>&1 &
system=$!
cleanup() {
    kill -TERM "$system" 2>/dev/null || true
    wait "$system" 2>/dev/null || true
    [ -n "${WITH_SYSTEM_KEEP:-}" ] || rm -rf "$data"
}
trap cleanup EXIT

# Ready means user-service's /readyz is 200: its database and auth-service both answer.
python3 - "$USER_SERVICE_URL/readyz" "$system" <<'PY' || { cat "$log" >&2; exit 1; }
import os, ssl, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
# Over TLS, trust the CA that tools/dev.sh requires; a certificate for 127.0.0.1 or localhost.
context = ssl.create_default_context(cafile=os.environ.get("GRIMOS_TLS_CA"))
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("the system exited before it was ready; its log follows")
    if time.monotonic() > deadline:
        sys.exit(f"{url} was not ready within 60 s; the system's log follows")
    time.sleep(0.1)
PY

set +e
"$@"
status=$?
set -e
if [ "$status" -ne 0 ]; then
    echo "with-system: '$*' failed (status $status); the system's log follows" >&2
    cat "$log" >&2
fi
exit "$status"
