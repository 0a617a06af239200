#!/usr/bin/env bash
# Writes the secrets a deployment reads into DIR, each file only if it is missing (so that
# running it again changes nothing; delete a file to replace it):
#
#   service-token      the service credential both services share (GRIMOS_SERVICE_TOKEN_FILE)
#   signing-key.pem    auth-service's Ed25519 signing key, PKCS#8 PEM (AUTH_SIGNING_KEY_FILE)
#   postgres-password  the password of the PostgreSQL role grimos
#   auth.env, user.env AUTH_DATABASE_URL and USER_DATABASE_URL with that password, for the
#                      server named postgres (the Compose service and the dev overlay's Service)
#
# DIR is 0700, so only its owner reads it on this machine; the files are 0644, so that the
# containers' user (10001), to which Compose bind-mounts them, can read them too.
#
# Usage: deploy/secrets.sh DIR
set -euo pipefail

dir=${1:?usage: deploy/secrets.sh DIR}
install -d -m 0700 "$dir"
umask 022

made=()
if [ ! -s "$dir/service-token" ]; then
    openssl rand -hex 32 > "$dir/service-token"
    made+=(service-token)
fi
if [ ! -s "$dir/signing-key.pem" ]; then
    openssl genpkey -algorithm ed25519 -out "$dir/signing-key.pem" 2>/dev/null
    chmod 0644 "$dir/signing-key.pem"
    made+=(signing-key.pem)
fi
if [ ! -s "$dir/postgres-password" ]; then
    openssl rand -hex 24 > "$dir/postgres-password"
    made+=(postgres-password)
fi
password=$(cat "$dir/postgres-password")
for service in auth user; do
    file="$dir/$service.env"
    if [ ! -s "$file" ]; then
        name=$(echo "$service" | tr '[:lower:]' '[:upper:]')_DATABASE_URL
        echo "$name=postgres://grimos:$password@postgres:5432/grimos" > "$file"
        made+=("$service.env")
    fi
done
echo "deploy-secrets: $dir: made ${made[*]:-nothing}; files that existed are kept"
