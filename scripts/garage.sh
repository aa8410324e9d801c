#!/usr/bin/env bash
# A real S3 server for the tests: a single-node Garage on 127.0.0.1, in a temp directory.
#
# Usage:
#   scripts/garage.sh install        install garage 2.5.0 with cargo (about 7 minutes, once;
#                                    an installed garage of that version is reused)
#   scripts/garage.sh start DIR      start a fresh server with its data in DIR; prints the
#                                    environment to use it (also written to DIR/env)
#   scripts/garage.sh stop DIR       stop the server started in DIR
#
# The server binds 127.0.0.1 only, on free ports. It gets a layout (one node, 1 GB,
# replication_factor = 1), a bucket (blockvault-test) and a key with read/write on it. DIR/env
# exports AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_ALLOW_HTTP=true, BLOCKVAULT_TEST_S3_BUCKET, and GARAGE_CONFIG / GARAGE_PID_FILE so tests
# can stop and restart the server (fault tests).
set -euo pipefail

VERSION=2.5.0
BUCKET=blockvault-test
export PATH="$HOME/.cargo/bin:$PATH"

die() { echo "garage.sh: $*" >&2; exit 1; }

install() {
    if command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "v\?$VERSION"; then
        return
    fi
    echo "garage.sh: installing garage $VERSION with cargo (takes several minutes, once)" >&2
    cargo install garage --locked --version "$VERSION" >&2 ||
        die "cargo install garage --locked --version $VERSION failed"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1
    install
    rm -rf "$dir"
    mkdir -p "$dir/meta" "$dir/data"
    local s3_port rpc_port admin_port
    s3_port=$(free_port); rpc_port=$(free_port); admin_port=$(free_port)
    cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TOML
    chmod 600 "$dir/garage.toml"
    local g=(garage -c "$dir/garage.toml")
    "${g[@]}" server >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"

    # Wait for the node to answer (bounded: 30 s).
    local node="" i
    for i in $(seq 1 60); do
        node=$("${g[@]}" node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || die "garage server exited; see $dir/server.log: $(tail -5 "$dir/server.log")"
        sleep 0.5
    done
    [ -n "$node" ] || die "garage did not come up within 30 s; see $dir/server.log"

    # `node id` can answer before the server's RPC listener is up (seen on a busy machine):
    # retry the first admin command until the node takes it (bounded: 30 s), and never leave
    # a half-started server behind.
    for i in $(seq 1 60); do
        "${g[@]}" layout assign -z dc1 -c 1G "$node" >/dev/null 2>&1 && break
        if [ "$i" -eq 60 ]; then
            stop "$dir"
            die "garage did not accept its layout within 30 s; see $dir/server.log"
        fi
        sleep 0.5
    done
    "${g[@]}" layout apply --version 1 >/dev/null
    "${g[@]}" bucket create "$BUCKET" >/dev/null
    local key_info key_id secret
    key_info=$("${g[@]}" key create blockvault-test-key)
    key_id=$(awk '/Key ID:/ {print $3}' <<<"$key_info")
    secret=$(awk '/Secret key:/ {print $3}' <<<"$key_info")
    if [ -z "$key_id" ] || [ -z "$secret" ]; then
        die "could not read the new key from: $key_info"
    fi
    "${g[@]}" bucket allow --read --write --owner "$BUCKET" --key blockvault-test-key >/dev/null

    cat >"$dir/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
export AWS_REGION=garage
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_ALLOW_HTTP=true
export BLOCKVAULT_TEST_S3_BUCKET=$BUCKET
export GARAGE_CONFIG=$dir/garage.toml
export GARAGE_PID_FILE=$dir/pid
ENV
    chmod 600 "$dir/env"
    cat "$dir/env"
}

stop() {
    local dir=$1 pid
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
}

case ${1:-} in
    install) install ;;
    start) [ $# -eq 2 ] || die "usage: garage.sh start DIR"; start "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: garage.sh stop DIR"; stop "$2" ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac
