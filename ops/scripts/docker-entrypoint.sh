#!/usr/bin/env bash
# The image's entrypoint. Usage:
#   docker-entrypoint.sh                  run the Procfile line of $PROCESS_TYPE (default: web)
#   docker-entrypoint.sh PROCESS_TYPE     run that Procfile line (purchase, query, events, web,
#                                         worker, flower, release)
#   docker-entrypoint.sh COMMAND [ARG…]   run COMMAND (ECS passes ["bash", "-c", <Procfile line>];
#                                         operators e.g. ["flask", "--app", "web", "catalog", "load"])
# bash -c execs the single command, so gunicorn or celery gets ECS's SIGTERM itself.
set -euo pipefail

procfile=/app/Procfile

if [[ $# -eq 0 ]]; then
  set -- "${PROCESS_TYPE:-web}"
fi

if [[ $# -eq 1 && $1 =~ ^[a-z]+$ ]]; then
  line=$(sed -n "s/^$1: //p" "$procfile")
  if [[ -n $line ]]; then
    exec bash -c "$line"
  fi
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "docker-entrypoint: '$1' is neither a process type of the Procfile nor a command" >&2
    exit 64
  fi
fi

exec "$@"
