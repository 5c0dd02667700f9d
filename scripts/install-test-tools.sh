#!/usr/bin/env bash
# System tools the test suite uses as real peers, from Debian's packages:
# docker-compose (validates docker-compose.yml with `config`, no engine needed);
# postgresql (the case stores' PostgreSQL runs start a throwaway cluster of it with initdb/pg_ctl).
set -euo pipefail
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-test-tools: installing ${missing[*]} from Debian"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
