#!/usr/bin/env bash
# Compares Conduit with axum, FastAPI (under uvicorn, two ways) and a std-only floor server on this machine.
#
#   benches/compare/run.sh                      # everything: scenarios 1-4
#   benches/compare/run.sh --quick              # tiny counts, for CI: about a minute once built
#   benches/compare/run.sh --reps 30 --scenarios 1,2 --only conduit,axum,floor
#
# Options (each also from the environment):
#   --quick              BENCH_QUICK=1          tiny counts: 5 rounds, 10 connections, 200 idle streams,
#                                               100 then 300 subscribers for 2 s
#   --reps N             BENCH_REPS=N           scenario 1 rounds (default 100); scenario 2 gets ceil(N/10)
#   --scenarios LIST     BENCH_SCENARIOS=LIST   comma-separated, from 1,2,3,4 (default all)
#   --only LIST          BENCH_ONLY=LIST        servers, from floor,conduit,axum,fastapi-std,fastapi-plain,
#                                               conduit-nometrics (Conduit with its metrics off) and conduit-built
#                                               (its /stream building Events, not writing them; both only when listed)
#   --port-base N        BENCH_PORT_BASE=N      servers listen on 127.0.0.1:N..N+6 (default 18400)
#   --no-build           BENCH_NO_BUILD=1       use the binaries already built
#   --conduit-workers N  BENCH_CONDUIT_WORKERS  Conduit's event loops (default 2)
#
# It creates a Python venv in benches/compare/.venv from requirements.txt when FastAPI is measured and the venv
# is missing or stale, builds every Rust binary with --release (CARGO_TARGET_DIR is honoured), then for each
# scenario starts fresh servers on loopback ports, runs the measuring client, and stops them. The tables are
# printed at the end, then Conduit's targets with a verdict each (which does not change the exit status), and
# the numbers are written to benches/compare/results/latest.json (not committed: BENCHMARKS.md keeps the figures
# of record). Only 127.0.0.1 is ever contacted, every loop is bounded, and every server started here is stopped
# on exit, whatever happens.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RESULTS="$HERE/results"
VENV="$HERE/.venv"

QUICK="${BENCH_QUICK:-0}"
REPS="${BENCH_REPS:-}"
SCENARIOS="${BENCH_SCENARIOS:-1,2,3,4}"
ONLY="${BENCH_ONLY:-}"
PORT_BASE="${BENCH_PORT_BASE:-18400}"
NO_BUILD="${BENCH_NO_BUILD:-0}"
CONDUIT_WORKERS="${BENCH_CONDUIT_WORKERS:-2}"
ALL_SERVERS=(floor conduit axum fastapi-std fastapi-plain conduit-nometrics conduit-built)
# Measured unless --only says otherwise; conduit-nometrics is there to measure what counting metrics costs,
# conduit-built what building each event as an `Event` costs against writing it in place.
DEFAULT_SERVERS=(floor conduit axum fastapi-std fastapi-plain)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --reps) REPS="${2:?--reps needs a number}"; shift ;;
        --reps=*) REPS="${1#*=}" ;;
        --scenarios) SCENARIOS="${2:?--scenarios needs a list}"; shift ;;
        --scenarios=*) SCENARIOS="${1#*=}" ;;
        --only) ONLY="${2:?--only needs a list}"; shift ;;
        --only=*) ONLY="${1#*=}" ;;
        --port-base) PORT_BASE="${2:?--port-base needs a number}"; shift ;;
        --port-base=*) PORT_BASE="${1#*=}" ;;
        --no-build) NO_BUILD=1 ;;
        --conduit-workers) CONDUIT_WORKERS="${2:?--conduit-workers needs a number}"; shift ;;
        --conduit-workers=*) CONDUIT_WORKERS="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$REPS" ] && ! [[ "$REPS" =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: --reps must be a positive integer, got '$REPS'" >&2
    exit 2
fi
if ! [[ "$CONDUIT_WORKERS" =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: --conduit-workers must be a positive integer, got '$CONDUIT_WORKERS'" >&2
    exit 2
fi
if ! [[ "$PORT_BASE" =~ ^[0-9]+$ ]] || [ "$PORT_BASE" -lt 1024 ] || [ "$PORT_BASE" -gt 65000 ]; then
    echo "run.sh: --port-base must be from 1024 to 65000, got '$PORT_BASE'" >&2
    exit 2
fi
for s in ${SCENARIOS//,/ }; do
    case "$s" in 1|2|3|4) ;; *) echo "run.sh: unknown scenario '$s' (1, 2, 3 or 4)" >&2; exit 2 ;; esac
done

SERVERS=()
if [ -z "$ONLY" ]; then
    SERVERS=("${DEFAULT_SERVERS[@]}")
else
    for name in ${ONLY//,/ }; do
        case " ${ALL_SERVERS[*]} " in
            *" $name "*) ;;
            *) echo "run.sh: unknown server '$name' (one of: ${ALL_SERVERS[*]})" >&2; exit 2 ;;
        esac
    done
    # Columns (and the order within each round) always follow ALL_SERVERS, whatever order --only lists.
    for name in "${ALL_SERVERS[@]}"; do
        case ",$ONLY," in *",$name,"*) SERVERS+=("$name") ;; esac
    done
fi
wants() { case " ${SERVERS[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

port_of() {
    local i
    for i in "${!ALL_SERVERS[@]}"; do
        if [ "${ALL_SERVERS[$i]}" = "$1" ]; then echo $((PORT_BASE + i)); return; fi
    done
}

# --- servers: started here, always stopped here --------------------------------------------------------------

declare -A PIDS=()

stop_servers() {
    local name pid i
    for name in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    for name in "${!PIDS[@]}"; do
        pid="${PIDS[$name]}"
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        { wait "$pid"; } 2>/dev/null || true
    done
    PIDS=()
}

HARNESS_PID=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$HARNESS_PID" ]; then
        kill -TERM "$HARNESS_PID" 2>/dev/null || true
        { wait "$HARNESS_PID"; } 2>/dev/null || true
    fi
    if [ "${#PIDS[@]}" -gt 0 ]; then
        stop_servers
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_server() {
    local name="$1" port addr log
    port="$(port_of "$name")"
    addr="127.0.0.1:$port"
    log="$RESULTS/logs/$name.log"
    if port_in_use "$port"; then
        echo "run.sh: port $port (for $name) is already in use; pick other ports with --port-base" >&2
        exit 1
    fi
    case "$name" in
        floor) "$HARNESS_DIR/floor" --addr "$addr" >>"$log" 2>&1 & ;;
        conduit) "$CONDUIT_BIN" --addr "$addr" --workers "$CONDUIT_WORKERS" --metrics on >>"$log" 2>&1 & ;;
        conduit-nometrics)
            "$CONDUIT_BIN" --addr "$addr" --workers "$CONDUIT_WORKERS" --metrics off >>"$log" 2>&1 & ;;
        conduit-built)
            "$CONDUIT_BIN" --addr "$addr" --workers "$CONDUIT_WORKERS" --metrics on --stream-events built \
                >>"$log" 2>&1 & ;;
        axum) "$AXUM_BIN" --addr "$addr" >>"$log" 2>&1 & ;;
        fastapi-std)
            "$VENV/bin/uvicorn" --app-dir "$HERE" fastapi_app:app --host 127.0.0.1 --port "$port" \
                --loop uvloop --http httptools --no-access-log --log-level warning \
                --timeout-graceful-shutdown 5 >>"$log" 2>&1 & ;;
        fastapi-plain)
            "$VENV/bin/uvicorn" --app-dir "$HERE" fastapi_app:app --host 127.0.0.1 --port "$port" \
                --loop asyncio --http h11 --no-access-log --log-level warning \
                --timeout-graceful-shutdown 5 >>"$log" 2>&1 & ;;
    esac
    PIDS[$name]=$!
    SERVER_ARGS+=(--server "$name=$addr@${PIDS[$name]}")
}

start_servers() {
    local name
    SERVER_ARGS=()
    for name in "${SERVERS[@]}"; do
        start_server "$name"
    done
}

# --- limits ----------------------------------------------------------------------------------------------------

# Scenarios 3 and 4 hold 10,000 streams: the servers and the client each need a descriptor per connection
# (each process has its own limit, and every one started here inherits this one).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
[ "$NOFILE" = unlimited ] && NOFILE=1048576
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"

# --- Python --------------------------------------------------------------------------------------------------

if wants fastapi-std || wants fastapi-plain; then
    PYTHON="${PYTHON:-python3}"
    want_stamp="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
    have_stamp="$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)"
    if [ ! -x "$VENV/bin/uvicorn" ] || [ "$want_stamp" != "$have_stamp" ]; then
        echo "== python venv ($VENV) from requirements.txt"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"
        echo "$want_stamp" >"$VENV/.requirements.sha256"
    fi
fi

# --- Rust builds -----------------------------------------------------------------------------------------------

CONDUIT_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
HARNESS_TARGET="${CARGO_TARGET_DIR:-$HERE/harness/target}"
AXUM_TARGET="${CARGO_TARGET_DIR:-$HERE/axum-server/target}"
CONDUIT_BIN="$CONDUIT_TARGET/release/examples/bench_server"
AXUM_BIN="$AXUM_TARGET/release/axum-sse-bench"
HARNESS_DIR="$HARNESS_TARGET/release"
HARNESS="$HARNESS_DIR/harness"

build_started=$SECONDS
if [ "$NO_BUILD" != 1 ]; then
    echo "== cargo build --release (harness and floor)"
    cargo build --release --quiet --manifest-path "$HERE/harness/Cargo.toml"
    if wants conduit || wants conduit-nometrics || wants conduit-built; then
        echo "== cargo build --release --example bench_server (Conduit)"
        cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --example bench_server
    fi
    if wants axum; then
        echo "== cargo build --release (axum server)"
        cargo build --release --quiet --manifest-path "$HERE/axum-server/Cargo.toml"
    fi
fi
build_seconds=$((SECONDS - build_started))
for bin in "$HARNESS" "$HARNESS_DIR/floor"; do
    [ -x "$bin" ] || { echo "run.sh: $bin is missing (run without --no-build)" >&2; exit 1; }
done
for bin in "$CONDUIT_BIN:conduit" "$CONDUIT_BIN:conduit-nometrics" "$CONDUIT_BIN:conduit-built" "$AXUM_BIN:axum"; do
    if wants "${bin##*:}" && [ ! -x "${bin%:*}" ]; then
        echo "run.sh: ${bin%:*} is missing (run without --no-build)" >&2
        exit 1
    fi
done

# --- measure ---------------------------------------------------------------------------------------------------

mkdir -p "$RESULTS/logs"
rm -f "$RESULTS"/scenario-*.txt "$RESULTS"/scenario-*.json "$RESULTS"/targets-*.tsv "$RESULTS"/latest.json \
    "$RESULTS"/logs/*.log

HARNESS_ARGS=(--out "$RESULTS" --clk-tck "$CLK_TCK" --nofile "$NOFILE")
[ "$QUICK" = 1 ] && HARNESS_ARGS+=(--quick)
[ -n "$REPS" ] && HARNESS_ARGS+=(--reps "$REPS")

run_started=$SECONDS
failed=()
for scenario in ${SCENARIOS//,/ }; do
    echo "== scenario $scenario: starting ${SERVERS[*]}"
    start_servers
    # In the background so that a signal to this script is handled at once, not after the client finishes.
    "$HARNESS" run --scenario "$scenario" "${SERVER_ARGS[@]}" "${HARNESS_ARGS[@]}" &
    HARNESS_PID=$!
    if ! wait "$HARNESS_PID"; then
        failed+=("$scenario")
    fi
    HARNESS_PID=""
    stop_servers
done
run_seconds=$((SECONDS - run_started))

py_version=""
if [ -x "$VENV/bin/python" ]; then py_version="$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"; fi
echo
echo "== results (build ${build_seconds} s, measurements ${run_seconds} s; quick=$QUICK)"
"$HARNESS" report --dir "$RESULTS" \
    --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --meta "quick=$QUICK" \
    --meta "reps=${REPS:-default}" \
    --meta "scenarios=$SCENARIOS" \
    --meta "servers=${SERVERS[*]}" \
    --meta "conduit_workers=$CONDUIT_WORKERS" \
    --meta "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo +changes)" \
    --meta "cpus=$(nproc)" \
    --meta "cpu_model=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')" \
    --meta "kernel=$(uname -r)" \
    --meta "rustc=$(rustc -V 2>/dev/null || true)" \
    --meta "python=$py_version" \
    --meta "nofile=$NOFILE" \
    --meta "build_seconds=$build_seconds" \
    --meta "run_seconds=$run_seconds"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "run.sh: scenario(s) ${failed[*]} had failures; see the notes above and $RESULTS/logs/" >&2
    exit 1
fi
