#!/usr/bin/env bash
# Build the wheel and the Debian package, both into dist/:
#
#   packaging/build.sh            # from the committed tree (HEAD): what a release ships
#   packaging/build.sh --worktree # from the working tree as it is, uncommitted changes included
#
# dist/ccf_agent-<version>-cp311-cp311-linux_x86_64.whl   (pip wheel, PEP 517; with the C loop)
# dist/ccf-agent_<version>-1_amd64.deb        (dpkg-buildpackage + debhelper; the venv is built
#                                              from that same wheel, dependencies from PyPI)
# Needs: git, debhelper, python3.11-venv, python3.11-dev and gcc (installed with apt when run as
# root and missing).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIST="$ROOT/dist"
PYTHON=/usr/bin/python3.11
FROM=HEAD
[ "${1:-}" = --worktree ] && FROM=worktree

missing=()
command -v dh >/dev/null || missing+=(debhelper)
command -v dpkg-buildpackage >/dev/null || missing+=(dpkg-dev)
[ -x "$PYTHON" ] && "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3.11 python3.11-venv)
[ -f /usr/include/python3.11/Python.h ] || missing+=(python3.11-dev)
command -v gcc >/dev/null || missing+=(gcc)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "build.sh: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "build.sh: missing ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

WORK="$(mktemp -d /tmp/ccf-agent-build.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/ccf-agent"
mkdir -p "$SRC" "$DIST"
if [ "$FROM" = HEAD ]; then
    git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SRC"
else
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
        | (cd "$ROOT" && tar --null --ignore-failed-read -T - -cf -) | tar -x -C "$SRC"
fi
VERSION="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$SRC/pyproject.toml")"
echo "build.sh: ccf-agent $VERSION from $FROM" >&2

# 1. The wheel.
"$PYTHON" -m pip wheel --quiet --no-deps --disable-pip-version-check -w "$SRC/dist" "$SRC"
WHEEL="$(ls "$SRC"/dist/ccf_agent-"$VERSION"-*.whl)"
"$PYTHON" -c 'import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit(not any(n.startswith("ccf_agent/_native/_fast") and n.endswith(".so") for n in names))' "$WHEEL" || {
    echo "build.sh: the wheel has no compiled pipeline loop (ccf_agent/_native/ failed to build)" >&2
    exit 1
}

# 2. The .deb, with the wheel in dist/ for debian/rules to install into the venv.
cp -r "$SRC/packaging/debian" "$SRC/debian"
cp "$SRC/systemd/ccf-agent.service" "$SRC/debian/ccf-agent.service"
for unit in service timer; do  # the daily report: installed, not enabled
    cp "$SRC/systemd/ccf-agent-report.$unit" "$SRC/debian/ccf-agent.ccf-agent-report.$unit"
done
cp "$SRC/packaging/README.md" "$SRC/debian/README.Debian"
cat > "$SRC/debian/changelog" <<EOF
ccf-agent ($VERSION-1) bookworm; urgency=medium

  * Release $VERSION (built from $FROM$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null | sed 's/^/ at /')).

 -- Click Clack Cash Flow operations <ops@click-clack-cashflow.invalid>  $(date -R)
EOF
(cd "$SRC" && dpkg-buildpackage -b -us -uc --no-pre-clean >"$WORK/dpkg-buildpackage.log" 2>&1) || {
    tail -40 "$WORK/dpkg-buildpackage.log" >&2
    exit 1
}

cp "$WHEEL" "$DIST/"
cp "$WORK"/ccf-agent_"$VERSION"-1_*.deb "$DIST/"
ls -1 "$DIST"/ccf_agent-"$VERSION"-*.whl "$DIST"/ccf-agent_"$VERSION"-1_*.deb
