# Sourced by .ci/run: system services the web service and DICOM network tests need, from Debian packages.
# Headless Chromium (the page test), a private PostgreSQL server on loopback (the PostgreSQL store
# tests) and a private Orthanc PACS (.ci/orthanc.sh: the `chestlens listen` end-to-end tests); their
# absence is then a test failure (CHESTLENS_REQUIRE_BROWSER=1, CHESTLENS_REQUIRE_POSTGRES=1,
# CHESTLENS_REQUIRE_ORTHANC=1), while a developer without them gets skips. Defines stop_services for the
# caller's exit trap.

ci_apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "ci: apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ci_apt_install chromium chromium-driver postgresql orthanc orthanc-dicomweb
export CHESTLENS_REQUIRE_BROWSER=1
export CHESTLENS_BROWSER=/usr/bin/chromium

pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
pg_dir="$(mktemp -d /tmp/chestlens-ci-pg.XXXXXX)"
chown postgres: "$pg_dir"
stop_services() {
  declare -F stop_orthanc >/dev/null && stop_orthanc
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_services EXIT  # the caller's own EXIT trap replaces this one and must call stop_services
pg_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
runuser -u postgres -- "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir" start >/dev/null
runuser -u postgres -- "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" chestlens_test
export CHESTLENS_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$pg_port/chestlens_test"
export CHESTLENS_REQUIRE_POSTGRES=1
echo "ci: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port; chromium at $CHESTLENS_BROWSER"
source "$(dirname "${BASH_SOURCE[0]}")/orthanc.sh"
