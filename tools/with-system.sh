#!/usr/bin/env bash
# Run a command against a fresh, private instance of the whole system (tools/dev.sh: two
# processes, a new data folder, free loopback ports), then stop it. The command sees:
#   USER_SERVICE_URL  http://127.0.0.1:<port>  user-service: HTTP/JSON, gRPC, gRPC-Web
#   AUTH_SERVICE_URL  http://127.0.0.1:<port>  auth-service: gRPC
#   GRIMOS_SERVICE_TOKEN                       the service credential both services share
#                                              (for the service-only rpcs of auth-service)
#   WEB_ORIGIN        http://127.0.0.1:<port>  an origin user-service allows by CORS (for a page)
#   WEB_LISTEN_FD     3                        a socket listening on WEB_ORIGIN's port, to serve
#                                              the page on (nothing else can take the port)
# With GRIMOS_TLS_CERT and GRIMOS_TLS_KEY (and GRIMOS_TLS_CA, which tools/dev.sh then requires)
# both services serve TLS only, and the two service URLs are https:// ones.
# Usage: tools/with-system.sh COMMAND [ARGS...]; the system's logs go to $WITH_SYSTEM_LOG
# (default: a file in the data folder, printed if the command fails).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

# A page's origin must be known before user-service starts (CORS), so its port is bound now
# and kept: this script runs again with the listening socket on fd 3 (WEB_LISTEN_FD), which
# the command inherits and the web example serves on (examples/web/serve.mjs).
if [ -z "${WEB_LISTEN_FD:-}" ]; then
    exec python3 -c '
import os, socket, sys
web = socket.socket()
web.bind(("127.0.0.1", 0))
web.listen(128)
os.dup2(web.fileno(), 3)
os.set_inheritable(3, True)
os.environ["WEB_LISTEN_FD"] = "3"
os.environ["WEB_ORIGIN"] = "http://127.0.0.1:%d" % web.getsockname()[1]
os.execv("/bin/bash", ["bash", *sys.argv[1:]])' "$0" "$@"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."

data=$(mktemp -d "${TMPDIR:-/tmp}/grimos-system.XXXXXX")
# Both services bind port 0 and keep what they bound; tools/dev.sh writes the addresses.
export DEV_DATA_DIR=$data
export AUTH_LISTEN_ADDR=127.0.0.1:0 USER_LISTEN_ADDR=127.0.0.1:0
export USER_CORS_ALLOWED_ORIGINS=$WEB_ORIGIN
scheme=http
[ -z "${GRIMOS_TLS_CERT:-}" ] || scheme=https
log=${WITH_SYSTEM_LOG:-$data/system.log}

# Build first, outside the readiness timeout: a cold checkout takes minutes.
DEV_BUILD_ONLY=1 tools/dev.sh 3>&-
# The web port's socket (fd 3) stays with the command, not with the system.
DEV_SKIP_BUILD=1 tools/dev.sh >"$log" 2>&1 3>&- &
system=$!
cleanup() {
    kill -TERM "$system" 2>/dev/null || true
    wait "$system" 2>/dev/null || true
    [ -n "${WITH_SYSTEM_KEEP:-}" ] || rm -rf "$data"
}
trap cleanup EXIT

# Ready means both services have written their addresses and user-service's /readyz is 200:
# its database and auth-service both answer.
addresses=$(python3 - "$data" "$scheme" "$system" <<'PY'
import os, ssl, sys, time, urllib.request
data, scheme, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Over TLS, trust the CA that tools/dev.sh requires; a certificate for 127.0.0.1 or localhost.
context = ssl.create_default_context(cafile=os.environ.get("GRIMOS_TLS_CA"))
deadline = time.monotonic() + 60

def address(name):
    try:
        with open(os.path.join(data, f"{name}.addr")) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None

while True:
    auth, user = address("auth-service"), address("user-service")
    if auth and user:
        try:
            url = f"{scheme}://{user}/readyz"
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    print(auth, user)
                    break
        except OSError:
            pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("the system exited before it was ready; its log follows")
    if time.monotonic() > deadline:
        sys.exit(f"the system was not ready within 60 s (addresses: {auth}, {user}); its log follows")
    time.sleep(0.1)
PY
) || { cat "$log" >&2; exit 1; }
read -r auth_addr user_addr <<<"$addresses"
export USER_SERVICE_URL=$scheme://$user_addr AUTH_SERVICE_URL=$scheme://$auth_addr
# tools/dev.sh made one in the data folder unless it was given one.
GRIMOS_SERVICE_TOKEN=${GRIMOS_SERVICE_TOKEN:-$(cat "$data/service-token")}
export GRIMOS_SERVICE_TOKEN

set +e
"$@"
status=$?
set -e
if [ "$status" -ne 0 ]; then
    echo "with-system: '$*' failed (status $status); the system's log follows" >&2
    cat "$log" >&2
fi
exit "$status"
