#!/usr/bin/env bash
# Debian packages the tests and the native stack use: nginx (router), prometheus/promtool
# (scrape + rule checks), chromium (console screenshots), fonts-nanum (Korean glyphs in those
# screenshots), wrk (benchmarks).
# Installs what is missing when run as root; otherwise says what is missing and goes on.
set -euo pipefail
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
[ -d /usr/share/fonts/truetype/nanum ] || need+=(fonts-nanum)
command -v wrk >/dev/null || need+=(wrk)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "missing system packages (tests needing them are skipped): ${need[*]}" >&2
fi
