#!/usr/bin/env bash
# System tools the test suite uses as real peers, from Debian's packages:
# docker-compose (validates docker-compose.yml with `config`, no engine needed),
# prometheus (the server scrapes a running pipeline in tests/test_prometheus_scrape.py; its promtool checks and
# unit-tests the rules), tmux (drives `signalements status` in a real terminal),
# node and npm (run the official AsyncAPI parser on the published AsyncAPI document; rebuild the commune
# reference from its pinned npm sources, to check the committed one),
# postgresql (the case stores' PostgreSQL runs start a throwaway cluster of it with initdb/pg_ctl),
# chromium and its chromedriver (the unit desk's pages are tested in the real browser, headless, by Selenium).
set -euo pipefail
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v tmux >/dev/null || missing+=(tmux)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-test-tools: installing ${missing[*]} from Debian"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
