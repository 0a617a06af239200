#!/usr/bin/env bash
# Makes the build context of deploy/Containerfile in OUT from release binaries already built
# in BIN_DIR (CI builds them once, for the benchmark; nothing is compiled inside the image):
#
#   OUT/bin/      auth-service and user-service
#   OUT/runtime/  the root filesystem of the default base: exactly the shared libraries `ldd`
#                 names for the two binaries and the dynamic loader, at the paths `ldd` prints;
#                 Debian's CA bundle (package ca-certificates); /etc/passwd and /etc/group with
#                 the services' user (10001); /etc/nsswitch.conf (hosts from files, then DNS);
#                 an empty /tmp and /var/lib, the data volume's parent. No shell, no package
#                 manager, nothing else.
#   OUT/data/     grimos/, an empty folder (0700): the data volume, /var/lib/grimos
#
# Usage: deploy/image-context.sh OUT BIN_DIR   (BIN_DIR: the cargo target dir's release/)
set -euo pipefail

out=${1:?usage: deploy/image-context.sh OUT BIN_DIR}
bins=${2:?usage: deploy/image-context.sh OUT BIN_DIR}
ca_bundle=/etc/ssl/certs/ca-certificates.crt

for bin in auth-service user-service; do
    if [ ! -x "$bins/$bin" ]; then
        echo "image-context: no $bins/$bin; build it first:" \
            "cargo build --release --locked -p auth-service -p user-service" >&2
        exit 1
    fi
done
if [ ! -s "$ca_bundle" ]; then
    echo "image-context: no $ca_bundle (apt-get install ca-certificates)" >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out/bin" "$out/runtime/etc/ssl/certs" "$out/runtime/var/lib" "$out/data/grimos"
install -m 0755 "$bins/auth-service" "$bins/user-service" "$out/bin/"

# Every library either binary loads, and the loader (the one line of `ldd` without `=>`);
# a library `ldd` cannot find fails here rather than at the container's start.
for bin in auth-service user-service; do
    ldd "$bins/$bin"
done | while read -r first second third _; do
    case "$first $second" in
        linux-vdso.so.*) continue ;; # provided by the kernel
        *" => not") echo "image-context: $first not found" >&2; exit 1 ;;
        *" =>") path=$third ;;
        /*) path=$first ;;
        *) echo "image-context: unexpected ldd line: $first $second $third" >&2; exit 1 ;;
    esac
    install -D -m 0755 "$(readlink -f "$path")" "$out/runtime$path"
done

install -m 0644 "$ca_bundle" "$out/runtime/etc/ssl/certs/ca-certificates.crt"
cat > "$out/runtime/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/nonexistent
nobody:x:65534:65534:nobody:/nonexistent:/nonexistent
grimos:x:10001:10001:grimOS services:/var/lib/grimos:/nonexistent
EOF
cat > "$out/runtime/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
grimos:x:10001:
EOF
# glibc resolves names through NSS; its files and dns back ends are built into libc.so.6.
echo 'hosts: files dns' > "$out/runtime/etc/nsswitch.conf"
chmod 0644 "$out/runtime/etc/passwd" "$out/runtime/etc/group" "$out/runtime/etc/nsswitch.conf"
install -d -m 1777 "$out/runtime/tmp"
chmod 0700 "$out/data/grimos"
echo "image-context: $out ($(du -sh "$out" | cut -f1)): $(cd "$out" && find bin runtime -type f | sort | tr '\n' ' ')"
