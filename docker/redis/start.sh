#!/bin/sh
# Redis for docker-compose: the server as the image starts it, then the
# prediction stream's functions (ml/monitoring/stream.lua, mounted read-only)
# loaded as the admin, as scripts/stack.sh loads them locally. Redis keeps
# functions in memory only, so this runs on every start of the container.
# The admin's password is read from the ACL file (a compose secret), never
# put on a command line. The healthcheck waits for the marker file.
set -eu
marker=/tmp/vgsales-functions-loaded
rm -f "$marker"
docker-entrypoint.sh "$@" &
server=$!
trap 'kill -TERM "$server"; wait "$server"' TERM INT
REDISCLI_AUTH=$(sed -n 's/^user vgsales_admin .*>\([^ ]*\) .*$/\1/p' /run/secrets/redis_users)
export REDISCLI_AUTH
until redis-cli --no-auth-warning --user vgsales_admin ping 2>/dev/null | grep -q PONG; do
    kill -0 "$server" || exit 1
    sleep 0.2
done
redis-cli --no-auth-warning --user vgsales_admin -x FUNCTION LOAD REPLACE </vgsales/stream.lua
touch "$marker"
wait "$server"
