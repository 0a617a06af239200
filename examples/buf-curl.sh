#!/usr/bin/env bash
# Calling grimOS from the command line with `buf curl`, which reads the API from the servers'
# reflection: no .proto files needed. A walk-through and a test at once: every call's answer
# is checked, and the script exits non-zero with a message at the first surprise.
#
# Run it against a running system:   tools/with-system.sh examples/buf-curl.sh
#                              or:   USER_SERVICE_URL=... AUTH_SERVICE_URL=... examples/buf-curl.sh
# Settings: USER_SERVICE_URL (default http://127.0.0.1:8080), AUTH_SERVICE_URL (default
# http://127.0.0.1:50051), BUF (default: the pinned node_modules/.bin/buf).
#
# The servers speak plaintext gRPC, so every call says `--protocol grpc --http2-prior-knowledge`
# (for an https:// URL drop --http2-prior-knowledge; --cacert trusts a private CA).
# Answers are proto3 JSON: lowerCamelCase field names. On an error status buf curl prints
# {"code": ..., "message": ...} to stderr and exits with the gRPC code shifted left by 3
# (UNAUTHENTICATED, 16, exits 128).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

USER_SERVICE_URL=${USER_SERVICE_URL:-http://127.0.0.1:8080}
AUTH_SERVICE_URL=${AUTH_SERVICE_URL:-http://127.0.0.1:50051}
BUF=${BUF:-node_modules/.bin/buf}
[ -x "$BUF" ] || { echo "buf-curl.sh: $BUF not found; run 'npm ci' first" >&2; exit 1; }
# So that the calls below read exactly as you would type them.
buf() { "$BUF" "$@"; }

fail() { echo "buf-curl.sh: FAIL: $*" >&2; exit 1; }
# A call that fails unexpectedly (server down, error status) stops the script; say where.
trap 'echo "buf-curl.sh: FAIL: line $LINENO exited $?: $BASH_COMMAND" >&2' ERR
step() { printf '\n== %s\n' "$*"; }
# field PATH < JSON: print one field of a JSON document, e.g. `field user.id`; lists as JSON.
field() {
    python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value.get(key, "") if isinstance(value, dict) else ""
print(value if isinstance(value, str) else json.dumps(value))' "$1"
}
# expect WHAT ACTUAL EXPECTED
expect() { [ "$2" = "$3" ] || fail "$1 is '$2', expected '$3'"; echo "ok: $1 = $3"; }

step "services on user-service ($USER_SERVICE_URL) and auth-service ($AUTH_SERVICE_URL)"
services=$(buf curl --protocol grpc --http2-prior-knowledge --list-services "$USER_SERVICE_URL")
echo "$services"
for name in grimos.user.v1.UserService grimos.auth.v1.AuthService grpc.health.v1.Health grpc.reflection.v1.ServerReflection; do
    grep -qx "$name" <<<"$services" || fail "user-service does not list $name"
done
services=$(buf curl --protocol grpc --http2-prior-knowledge --list-services "$AUTH_SERVICE_URL")
echo "$services"
for name in grimos.auth.v1.AuthService grpc.health.v1.Health grpc.reflection.v1.ServerReflection; do
    grep -qx "$name" <<<"$services" || fail "auth-service does not list $name"
done

step "health"
health=$(buf curl --protocol grpc --http2-prior-knowledge "$USER_SERVICE_URL/grpc.health.v1.Health/Check")
expect "user-service health" "$(field status <<<"$health")" SERVING
health=$(buf curl --protocol grpc --http2-prior-knowledge -d '{"service": "grimos.user.v1.UserService"}' "$USER_SERVICE_URL/grpc.health.v1.Health/Check")
expect "user-service health of grimos.user.v1.UserService" "$(field status <<<"$health")" SERVING
health=$(buf curl --protocol grpc --http2-prior-knowledge "$AUTH_SERVICE_URL/grpc.health.v1.Health/Check")
expect "auth-service health" "$(field status <<<"$health")" SERVING

# A new email every run, so the script can run again against the same system.
email="ada-$(date +%s)-$$@example.com"
password="correct horse battery staple"

step "sign up: UserService/CreateUser (open to anyone)"
created=$(buf curl --protocol grpc --http2-prior-knowledge -d @- "$USER_SERVICE_URL/grimos.user.v1.UserService/CreateUser" <<EOF
{"email": "$email", "password": "$password", "displayName": "Ada Lovelace"}
EOF
)
echo "$created"
user_id=$(field user.id <<<"$created")
[ -n "$user_id" ] || fail "CreateUser returned no user id"
expect "created email" "$(field user.email <<<"$created")" "$email"
expect "created displayName" "$(field user.displayName <<<"$created")" "Ada Lovelace"
expect "created roles" "$(field user.roles <<<"$created")" '["user"]'

step "log in: AuthService/Login on user-service"
login=$(buf curl --protocol grpc --http2-prior-knowledge -d @- "$USER_SERVICE_URL/grimos.auth.v1.AuthService/Login" <<EOF
{"email": "$email", "password": "$password"}
EOF
)
echo "$login" | python3 -c 'import json, sys; d = json.load(sys.stdin); d["accessToken"] = d["accessToken"][:16] + "..."; d["refreshToken"] = d["refreshToken"][:8] + "..."; print(json.dumps(d, indent=2))'
token=$(field accessToken <<<"$login")
[ -n "$token" ] || fail "Login returned no access token"
expect "login userId" "$(field userId <<<"$login")" "$user_id"

step "a wrong password: an error status, non-zero exit"
status=0
error=$(buf curl --protocol grpc --http2-prior-knowledge -d @- "$USER_SERVICE_URL/grimos.auth.v1.AuthService/Login" 2>&1 <<EOF
{"email": "$email", "password": "not the password"}
EOF
) || status=$?
echo "$error (exit $status)"
[ "$status" -ne 0 ] || fail "Login with a wrong password succeeded"
expect "wrong-password exit status" "$status" 128
grep -q '"code": "unauthenticated"' <<<"$error" || fail "wrong password did not give unauthenticated: $error"

step "who am I: UserService/GetCurrentUser with the access token"
me=$(buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $token" "$USER_SERVICE_URL/grimos.user.v1.UserService/GetCurrentUser")
echo "$me"
expect "current user id" "$(field user.id <<<"$me")" "$user_id"
expect "current user email" "$(field user.email <<<"$me")" "$email"
expect "current user displayName" "$(field user.displayName <<<"$me")" "Ada Lovelace"
expect "current user roles" "$(field user.roles <<<"$me")" '["user"]'

step "check the token: AuthService/ValidateToken on auth-service"
valid=$(buf curl --protocol grpc --http2-prior-knowledge -d "{\"accessToken\": \"$token\"}" "$AUTH_SERVICE_URL/grimos.auth.v1.AuthService/ValidateToken")
echo "$valid"
expect "validated userId" "$(field userId <<<"$valid")" "$user_id"
expect "validated roles" "$(field roles <<<"$valid")" '["user"]'
python3 -c 'import json, sys; sys.exit("users.read.self" not in json.load(sys.stdin)["permissions"])' <<<"$valid" \
    || fail "ValidateToken permissions lack users.read.self: $valid"
echo "ok: permissions include users.read.self"

printf '\nbuf-curl.sh: all checks passed\n'
