#!/usr/bin/env bash
# The whole test suite on a fresh machine of this kind: system packages, a virtualenv with
# the project and its test dependencies, then pytest. The OpenSearch node and the Kafka broker (from
# Maven Central) are built here and started by the tests' fixtures on first use; the go-lumber
# server and the bench sink are built by the fixtures too.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k rotation`.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
command -v logrotate >/dev/null || missing+=(logrotate)
command -v bzip2 >/dev/null || missing+=(bzip2)       # logrotate's compresscmd in the rotation-chain tests
command -v xz >/dev/null || missing+=(xz-utils)
command -v zstd >/dev/null || missing+=(zstd)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v openssl >/dev/null || missing+=(openssl)
command -v gcc >/dev/null || missing+=(gcc)
command -v mvn >/dev/null || missing+=(maven)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v go >/dev/null || missing+=(golang-go)
command -v chromium >/dev/null || missing+=(chromium)  # the HTML report opened in a real browser
command -v dpkg-buildpackage >/dev/null || missing+=(dpkg-dev)     # tests/ops/test_deb.py builds the .deb
command -v systemd-analyze >/dev/null || missing+=(systemd)         # verifies the unit (tests/ops)
command -v tmux >/dev/null || missing+=(tmux)       # a real terminal for `ccf-agent top` (tests/ops/test_top.py)
command -v tinyproxy >/dev/null || missing+=(tinyproxy-bin)  # a real forward proxy (tests/tinyproxy.py)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
# The pipeline's C loop is optional for an install, not for the tests: they hold it equal to Python's.
.venv/bin/python -c 'import ccf_agent._native._fast' || {
  echo "tests/run.sh: ccf_agent/_native/ did not build (is gcc installed?)" >&2
  exit 1
}

# Build the search engine's and the Kafka broker's classpaths up front so their download time
# shows here, not in a test.
.venv/bin/python -m tests.opensearch.launcher build
.venv/bin/python -m tests.kafka.launcher build

# The C code under AddressSanitizer/UBSan and ThreadSanitizer: its property and read-ahead tests
# only (~1.5 min on 2 cores), not the suite. CCF_SANITIZE=0 leaves it out (a quick local run).
if [ "${CCF_SANITIZE:-1}" != 0 ]; then
  bash tests/native/sanitize.sh
fi

exec .venv/bin/python -m pytest "$@"
