#!/usr/bin/env bash
# Make sure the servers that the integration tests need are up: PostgreSQL on 127.0.0.1:5432,
# MariaDB on 127.0.0.1:3306, NATS with JetStream on 127.0.0.1:4222 (tests/test_jetstream.py) and
# RabbitMQ on 127.0.0.1:5672 (tests/test_celery.py). Starts whichever is down, then waits (polling every
# 0.5 s, at most 60 s each) until it answers. Idempotent; prints one line per service.
set -euo pipefail

TIMEOUT_S=${SERVICES_TIMEOUT_S:-60}
HOST=127.0.0.1
PG_PORT=${SERVICES_PG_PORT:-5432}
MARIADB_PORT=${SERVICES_MARIADB_PORT:-3306}
NATS_PORT=${SERVICES_NATS_PORT:-4222}
RABBITMQ_PORT=${SERVICES_RABBITMQ_PORT:-5672}

tcp_open() { # host port
    timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

postgres_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$HOST" -p "$PG_PORT" -t 1
    else
        tcp_open "$HOST" "$PG_PORT"
    fi
}

mariadb_ready() {
    if command -v mariadb-admin >/dev/null 2>&1; then
        mariadb-admin -h "$HOST" -P "$MARIADB_PORT" --protocol=TCP -u root --connect-timeout=1 ping >/dev/null 2>&1
    else
        tcp_open "$HOST" "$MARIADB_PORT"
    fi
}

postgres_start() {
    local version
    version=$(ls /etc/postgresql)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
}

mariadb_start() {
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

nats_ready() {
    tcp_open "$HOST" "$NATS_PORT"
}

nats_start() {
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a "$HOST" -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

rabbitmq_ready() {
    tcp_open "$HOST" "$RABBITMQ_PORT"
}

rabbitmq_start() {
    rabbitmq-server -detached
}

ensure() { # name ready-fn start-fn
    local name=$1 ready=$2 start=$3
    if "$ready"; then
        echo "$name: already up"
        return 0
    fi
    if ! "$start" >/tmp/ci-services-"$name".log 2>&1; then
        # The start command may fail because the server came up in the meantime; the loop decides.
        echo "$name: start command failed (see /tmp/ci-services-$name.log); waiting anyway" >&2
    fi
    local started_at=$SECONDS
    local deadline=$((SECONDS + TIMEOUT_S))
    until "$ready"; do
        if ((SECONDS >= deadline)); then
            echo "ERROR: $name not ready after ${TIMEOUT_S} s; start output:" >&2
            cat /tmp/ci-services-"$name".log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    echo "$name: started, ready after $((SECONDS - started_at)) s"
}

ensure postgresql postgres_ready postgres_start
ensure mariadb mariadb_ready mariadb_start
ensure nats nats_ready nats_start
ensure rabbitmq rabbitmq_ready rabbitmq_start
