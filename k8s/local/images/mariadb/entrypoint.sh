#!/bin/sh
# Starts MariaDB as helm/kfp starts MySQL: runs as the pod's user, takes mariadbd's options as
# its arguments (--datadir among them) and, on an empty data directory, first creates the
# system tables and a root account with the password in $MYSQL_ROOT_PASSWORD_FILE that may
# connect from any host (KFP's API server and ML Metadata connect over the network as root).
# The data directory is made beside the final one and renamed into place once root has its
# password, so a start interrupted half-way is started over, not left without a password.
set -eu
datadir=/var/lib/mysql
for arg in "$@"; do
  case $arg in --datadir=*) datadir=${arg#--datadir=} ;; esac
done

if [ ! -d "$datadir/mysql" ]; then
  password=$(cat "${MYSQL_ROOT_PASSWORD_FILE:?MYSQL_ROOT_PASSWORD_FILE is not set}")
  partial=$datadir.partial
  echo "entrypoint: initialising $datadir"
  rm -rf "$partial" && mkdir -p "$partial"
  mariadb-install-db --datadir="$partial" --auth-root-authentication-method=normal \
    --skip-test-db >/dev/null
  # A server on a private socket only, for the accounts; the real one starts below.
  socket=/tmp/init.sock
  mariadbd "$@" --datadir="$partial" --skip-networking --socket="$socket" &
  pid=$!
  tries=0
  until mariadb-admin --user=root --socket="$socket" ping --silent >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -le 60 ] || { echo "entrypoint: the server did not start" >&2; exit 1; }
    sleep 1
  done
  # The password goes through stdin, never a command line.
  mariadb --user=root --socket="$socket" <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '$password';
CREATE USER 'root'@'%' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
  kill "$pid"
  wait "$pid" || true
  rm -rf "$datadir"
  mv "$partial" "$datadir"
  echo "entrypoint: initialised"
fi
exec mariadbd "$@"
