#!/usr/bin/env bash
# Make sure the machine has what pricepipe's local servers and Python environment need:
# Java 17 (Kafka 4, Cassandra 5.0, HDFS, Spark 4), Maven (fetches the servers' jars), PostgreSQL, Python >= 3.11,
# and Chromium with a font for the browser test of the chart page.
# Installs missing Debian packages when run as root; otherwise says what to install.
set -euo pipefail

missing=()
have_java17() {
  local java
  for java in "${PRICEPIPE_JAVA_HOME:-/nonexistent}/bin/java" /usr/lib/jvm/*17*/bin/java "$(command -v java || true)"; do
    [ -x "$java" ] && "$java" -version 2>&1 | grep -q 'version "17' && return 0
  done
  return 1
}
have_java17 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
# The local cluster's PostgreSQL (the shared Dagster instance): Debian's server programs.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "pricepipe needs Python 3.11 or newer with the venv module as '$python' (set PYTHON=... to choose another)." >&2
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "pricepipe needs these packages: ${missing[*]} (Debian/Ubuntu names); install them and run again." >&2
  exit 1
fi
echo "[setup] installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
