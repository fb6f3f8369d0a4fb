#!/usr/bin/env bash
# Builds tests/fuzz/fuzz_http_parser.c with clang's libFuzzer, AddressSanitizer
# and UBSan, then fuzzes engine/protocols/http/parser.c for SECONDS (default 60),
# starting from the seeds in tests/fuzz/corpus (never written to).
#
#   tests/fuzz/run-fuzz.sh [SECONDS]
#
# Needs clang with its libFuzzer runtime (Debian: the clang package); this
# script installs nothing.  CLANG=/path/to/clang picks a compiler.  New
# corpus entries and crash reproducers go to $FUZZ_WORK_DIR (default
# build-fuzz/ at the repository root); a crash exits non-zero and prints
# the reproducer's path.
set -euo pipefail

secs=${1:-60}
case $secs in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${FUZZ_WORK_DIR:-$root/build-fuzz}

cc=${CLANG:-}
if [ -z "$cc" ]; then
    for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        if command -v "$c" >/dev/null 2>&1; then
            cc=$c
            break
        fi
    done
fi
if [ -z "$cc" ] || ! command -v "$cc" >/dev/null 2>&1; then
    echo "error: clang not found (Debian: apt-get install clang); set CLANG= to pick one" >&2
    exit 127
fi

mkdir -p "$work/corpus" "$work/artifacts"
bin=$work/fuzz_http_parser
echo "== building $bin with $("$cc" --version | head -n1)"
if ! "$cc" -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Werror -I"$root/engine" \
    "$here/fuzz_http_parser.c" "$root/engine/protocols/http/parser.c" -o "$bin"; then
    echo "error: build failed; if linking libFuzzer failed, the clang runtime is missing" \
        "(Debian: the libclang-rt-NN-dev package matching clang-NN)" >&2
    exit 1
fi

echo "== fuzzing for ${secs}s"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
"$bin" "$work/corpus" "$here/corpus" \
    -dict="$here/http.dict" \
    -max_total_time="$secs" \
    -max_len=2048 \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/"
echo "== fuzzing clean for ${secs}s"
