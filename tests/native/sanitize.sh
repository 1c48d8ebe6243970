#!/usr/bin/env bash
# The native code under the sanitizers: builds the C extension twice more, with AddressSanitizer
# and UndefinedBehaviorSanitizer, then with ThreadSanitizer, each into a copy of the tree (the
# in-tree build the suite uses is left alone), and runs the native property tests and the
# read-ahead tests on it; the core's own programs (tests/native/test_core.py) are built with the
# same sanitizer (CCF_CORE_CFLAGS). A report halts the run and is printed.
#
# A Python extension under a sanitizer needs its runtime loaded before the interpreter starts
# (LD_PRELOAD), CPython's own allocations left out of the leak check (detect_leaks=0), and, for
# ThreadSanitizer, address-space randomisation off (setarch -R): its shadow memory wants fixed
# ranges that a randomised mmap base on newer kernels breaks.
#
# Usage: bash tests/native/sanitize.sh [address|thread]... (both by default). tests/run.sh runs
# it before the suite; CCF_SANITIZE=0 skips it there.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$PWD/.venv/bin/python}
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(address thread)

# What the sanitizers run: AddressSanitizer/UBSan the properties that hold the C paths equal to
# Python's (every C function on generated and hostile lines), the core's programs, the read-ahead
# thread's own tests and the tail's tests that read ahead; ThreadSanitizer (some 5x slower) the
# read-ahead core's program and the last two, and the corpus through the C loop with read-ahead,
# where the thread's work meets the loop's.
ADDRESS_TESTS=(tests/pipeline/test_native.py tests/native tests/tail/test_tail.py
               -k "not test_tail or ahead")
THREAD_TESTS=(tests/pipeline/test_native.py tests/native tests/tail/test_tail.py
              -k "test_read_ahead or ahead or corpus or sample_records")

# Each extension as pyproject.toml builds it: its name, then -I for each include dir and its sources.
sources=$("$PY" -c 'import tomllib
for m in tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["ext-modules"]:
    print(m["name"], *("-I" + d for d in m.get("include-dirs", [])), *m["sources"])')
include=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
work=$(mktemp -d "${TMPDIR:-/tmp}/ccf-sanitize.XXXXXX")
trap 'rm -rf "$work"' EXIT

for kind in "${kinds[@]}"; do
  tree="$work/$kind"
  mkdir -p "$tree"
  # The sources and the tests, without the in-tree build: the copy imports the sanitized one.
  git ls-files -co --exclude-standard ccf_agent tests pyproject.toml | grep -v '\.so$' |
    xargs cp --parents -t "$tree"
  case $kind in
    address)
      flags=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
      core="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
      preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
      tests=("${ADDRESS_TESTS[@]}")
      run=(env ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1");;
    thread)
      flags=(-fsanitize=thread)
      core="-fsanitize=thread"
      preload="$(gcc -print-file-name=libtsan.so)"
      tests=("${THREAD_TESTS[@]}")
      run=(setarch "$(uname -m)" -R env TSAN_OPTIONS="halt_on_error=1");;
    *) echo "sanitize.sh: address or thread, not '$kind'" >&2; exit 2;;
  esac
  while read -r name srcs; do
    out="$tree/${name//.//}$suffix"
    # shellcheck disable=SC2086 # srcs: the module's include dirs and sources, one word each
    gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -Wall "${flags[@]}" -I"$include" $srcs -o "$out"
  done <<< "$sources"
  echo "sanitize.sh: $kind: ${tests[*]}"
  # A fixed seed: this pass looks for memory and thread errors on known examples; the suite's
  # own run of the same properties is where new examples are looked for. --capture=sys: a
  # report goes to the real stderr (a sanitizer halts the process, and pytest's capture of the
  # descriptor would go with it; UBSan's standalone runtime ignores log_path).
  (cd "$tree" && "${run[@]}" CCF_CORE_CFLAGS="$core" LD_PRELOAD="$preload" "$PY" -m pytest -q -p no:cacheprovider -x --capture=sys \
      --hypothesis-seed=0 "${tests[@]}") || { echo "sanitize.sh: $kind: failed" >&2; exit 1; }
done
