#!/usr/bin/env bash
# Counts the instructions Conduit's bench_server executes in scenario 2 (100 concurrent streams of 1000 events)
# in two modes, under valgrind's cachegrind: with its metrics on and off, or with its events written in place
# and built as `Event`s. An instruction count does not depend on what else the machine is doing, as times do,
# so it shows what such a choice costs even on a busy machine.
#
#   benches/compare/instructions.sh                  # metrics on / off; prints instructions per stream
#   benches/compare/instructions.sh --events         # events written / built
#   benches/compare/instructions.sh --no-build       # with either of the above
#
# For each mode the server runs twice, serving 1 and then 4 rounds (after the harness's checks and warm-up);
# the difference between the two counts is the cost of 3 rounds alone, start-up and warm-up left out. Needs
# valgrind (Debian: apt-get install valgrind). Only 127.0.0.1 is contacted; every server started is stopped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PORT="${BENCH_PORT:-18490}"
NO_BUILD=0
FLAG=--metrics
MODES=(on off)
for arg in "$@"; do
    case "$arg" in
        --no-build) NO_BUILD=1 ;;
        --events) FLAG=--stream-events; MODES=(written built) ;;
        *) echo "instructions.sh: unknown argument $arg (--events, --no-build)" >&2; exit 2 ;;
    esac
done

command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is required (apt-get install valgrind)" >&2; exit 1; }
CONDUIT_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
HARNESS_TARGET="${CARGO_TARGET_DIR:-$HERE/harness/target}"
SERVER="$CONDUIT_TARGET/release/examples/bench_server"
HARNESS="$HARNESS_TARGET/release/harness"
if [ "$NO_BUILD" != 1 ]; then
    cargo build --release --quiet --manifest-path "$HERE/harness/Cargo.toml"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --example bench_server
fi
OUT="$(mktemp -d)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

# Runs the server under cachegrind in mode `$1`, serves `$2` measured rounds, and prints its instruction count.
count() {
    local mode="$1" rounds="$2" file="$OUT/cachegrind.$1.$2" i
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$file" \
        "$SERVER" --addr "127.0.0.1:$PORT" --workers 1 "$FLAG" "$mode" >"$OUT/server.log" 2>&1 &
    PID=$!
    for i in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    "$HARNESS" run --scenario 2 --server "conduit=127.0.0.1:$PORT" --reps $((rounds * 10)) --timeout 120 \
        --out "$OUT/results" >"$OUT/harness.log" 2>&1 || { cat "$OUT/harness.log" >&2; exit 1; }
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    awk '/^summary:/ { print $2 }' "$file"
}

declare -A PER_STREAM
for mode in "${MODES[@]}"; do
    one="$(count "$mode" 1)"
    four="$(count "$mode" 4)"
    PER_STREAM[$mode]=$(( (four - one) / 300 ))
    echo "${FLAG#--} $mode: $one instructions with 1 round, $four with 4: $((PER_STREAM[$mode])) per stream"
done
awk -v a="${PER_STREAM[${MODES[0]}]}" -v b="${PER_STREAM[${MODES[1]}]}" -v what="${FLAG#--} ${MODES[0]} / ${MODES[1]}" \
    'BEGIN { printf "instructions per stream, %s: %.4f\n", what, a / b }'
