#!/usr/bin/env python3
"""Compares two servers of one scenario in results/latest.json, round by round.

    python3 benches/compare/ratio.py conduit conduit-nometrics [--scenario 2] [--file PATH]

Prints, for the scenario's per-round wall times, the median over rounds of (A's time / B's time), the
medians of each, and the ratio of their server CPU per stream: how much slower A is than B measured under the
same conditions, round by round.
"""
import argparse
import json
import pathlib
import statistics

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("a")
parser.add_argument("b")
parser.add_argument("--scenario", type=int, default=2)
parser.add_argument("--file", default=str(pathlib.Path(__file__).parent / "results" / "latest.json"))
args = parser.parse_args()

data = json.loads(pathlib.Path(args.file).read_text())
scenario = next(s for s in data["scenarios"] if s["scenario"] == args.scenario)
servers = {s["name"]: s for s in scenario["servers"]}
a, b = servers[args.a], servers[args.b]
pairs = [(x, y) for x, y in zip(a["wall_s"], b["wall_s"]) if x and y]
ratios = [x / y for x, y in pairs]
print(f"scenario {args.scenario}: {len(pairs)} rounds, {args.a} vs {args.b}")
print(f"  wall time, median of per-round ratios: {statistics.median(ratios):.4f}")
print(f"  wall time medians: {statistics.median(x for x, _ in pairs) * 1e3:.2f} ms vs "
      f"{statistics.median(y for _, y in pairs) * 1e3:.2f} ms")
key = "server_cpu_ms_per_stream_schedstat"
if a.get(key) and b.get(key):
    print(f"  server CPU / stream: {a[key] * 1e3:.0f} us vs {b[key] * 1e3:.0f} us, ratio {a[key] / b[key]:.4f}")
