#!/bin/bash
# Runs once on an empty data volume (official mariadb image entrypoint):
# the same users and grants as scripts/stack.sh, with the same variable names.
set -euo pipefail
# The root password through the environment, not the client's command line.
MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot <<SQL
CREATE USER IF NOT EXISTS '${MARIADB_READER_USER}'@'%' IDENTIFIED BY '${MARIADB_READER_PASSWORD}';
GRANT ALL PRIVILEGES ON \`${MARIADB_DATABASE}%\`.* TO '${MARIADB_USER}'@'%';
GRANT SELECT, SHOW VIEW ON \`${MARIADB_DATABASE}%\`.* TO '${MARIADB_READER_USER}'@'%';
-- The registry server's store: its own database, reached by its login only.
CREATE DATABASE IF NOT EXISTS mlflow CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'vgsales_mlflow'@'%' IDENTIFIED BY '${MLFLOW_DB_PASSWORD}';
GRANT ALL PRIVILEGES ON mlflow.* TO 'vgsales_mlflow'@'%';
FLUSH PRIVILEGES;
SQL
