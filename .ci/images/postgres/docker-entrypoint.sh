#!/bin/sh
# Entrypoint of the postgres stand-in. It does what the official image's entrypoint
# does for the variables the Dyno stack sets (https://hub.docker.com/_/postgres):
# on the first start with an empty data directory it creates the cluster with
# POSTGRES_USER as superuser, POSTGRES_PASSWORD required over TCP, and the database
# POSTGRES_DB; on every start it runs postgres in the foreground as the postgres user.
# Not carried over: /docker-entrypoint-initdb.d, POSTGRES_HOST_AUTH_METHOD, *_FILE secrets.
set -eu

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

log() {
    echo "docker-entrypoint: $*" >&2
}

# As root: hand the data directory to postgres (a fresh bind mount is root-owned),
# then run this script again as postgres. setpriv execs in place, so postgres ends
# up as PID 1 and gets `docker stop`'s signal itself.
drop_root() {
    mkdir -p "$PGDATA"
    find "$PGDATA" ! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
}

initialise_cluster() {
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        log "POSTGRES_PASSWORD is empty: refusing to create a cluster without a superuser password"
        exit 1
    fi
    # The password goes through a 0600 file, never argv (mktemp creates it 0600).
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options, as upstream.
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >&2
    rm -f "$pwfile"
    # initdb's host lines cover only loopback; the stack's other containers connect
    # over the compose network.
    echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
    # The official image's socket is in /var/run/postgresql; these binaries' clients
    # look in /tmp. initdb rewrites this setting from its compiled-in default, so it
    # is set here rather than in the sample file.
    echo "unix_socket_directories = '/var/run/postgresql,/tmp'" >>"$PGDATA/postgresql.conf"
}

# Creates POSTGRES_DB on a server that listens on the unix socket only, so nothing
# outside the container (a healthcheck over TCP, the API server) sees the database
# before it exists. That is the official image's order too.
create_database() {
    if [ "$POSTGRES_DB" = postgres ]; then
        return 0
    fi
    pg_ctl --wait --silent -o "-c listen_addresses=''" start >&2
    psql --no-psqlrc -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres \
        --set=db="$POSTGRES_DB" >&2 <<'SQL'
CREATE DATABASE :"db";
SQL
    pg_ctl --wait --silent --mode=fast stop >&2
}

# `docker run IMAGE -c name=value` passes options to postgres, as upstream.
case "${1:-}" in
-*) set -- postgres "$@" ;;
esac

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    drop_root "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    log "initialising a new cluster in $PGDATA"
    initialise_cluster
    create_database
    log "cluster ready"
fi

exec "$@"
