#!/usr/bin/env bash
# A throwaway Postgres 15 cluster for tests and benchmarks: Debian's binaries, a data
# directory of its own, a free port on 127.0.0.1, TLS with a CA made on the spot.
#
#   scripts/pg.sh start DIR   creates (once) and starts the cluster in DIR; prints
#                             HIGUMA_TEST_PG_* variables (eval-able) describing it
#   scripts/pg.sh stop DIR    stops it (fast shutdown); the data stays for a restart
#   scripts/pg.sh env DIR     prints the variables again
#
# Runs Postgres as the `postgres` system user when invoked as root (Postgres refuses root).
set -euo pipefail

cmd="${1:?usage: pg.sh start|stop|env DIR}"
dir="${2:?usage: pg.sh start|stop|env DIR}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
user=higuma
password=higuma-test-password

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

print_env() {
    cat <<VARS
export HIGUMA_TEST_PG_HOST=127.0.0.1
export HIGUMA_TEST_PG_PORT=$(cat "$dir/port")
export HIGUMA_TEST_PG_USER=$user
export HIGUMA_TEST_PG_PASSWORD=$password
export HIGUMA_TEST_PG_DIR=$dir
export HIGUMA_TEST_PG_CA=$dir/tls/ca.crt
VARS
}

init() {
    mkdir -p "$dir/tls"
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' > "$dir/port"
    # A CA and a server certificate for 127.0.0.1 / localhost, for the TLS modes' tests.
    (
        cd "$dir/tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=higuma-test-ca" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile san.ext -out server.crt 2>/dev/null
        chmod 600 server.key
    )
    printf '%s\n' "$password" > "$dir/pwfile"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$dir"; chmod 755 "$dir"; fi
    as_pg "$PGBIN/initdb" -D "$dir/data" -U "$user" --pwfile="$dir/pwfile" --auth=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $(cat "$dir/port")
unix_socket_directories = '$dir'
max_connections = 300
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
shared_preload_libraries = 'pg_stat_statements'
fsync = off
synchronous_commit = off
CONF
}

case "$cmd" in
    start)
        [ -d "$dir/data" ] || init
        as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
        print_env
        ;;
    stop)
        as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
        ;;
    env)
        print_env
        ;;
    *)
        echo "usage: pg.sh start|stop|env DIR" >&2
        exit 2
        ;;
esac
