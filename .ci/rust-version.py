#!/usr/bin/env python3
"""Checks that the workspace's rust-version is honoured: no package in the build graph (libraries, their tests,
benches and examples) declares a rust-version newer than the workspace's. Exits 1 naming any that does."""
import json
import subprocess
import sys


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    metadata = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked"]))
    members = {m for m in metadata["workspace_members"]}
    ours = {p["rust_version"] for p in metadata["packages"] if p["id"] in members}
    if len(ours) != 1 or None in ours:
        print(f"every workspace member should inherit one rust-version, found {sorted(map(str, ours))}")
        return 1
    declared = ours.pop()
    newer = [
        f"{p['name']} {p['version']} needs Rust {p['rust_version']}"
        for p in metadata["packages"]
        if p.get("rust_version") and version(p["rust_version"]) > version(declared)
    ]
    if newer:
        print(f"the workspace declares rust-version {declared}, but:\n  " + "\n  ".join(sorted(newer)))
        return 1
    print(f"rust-version {declared} covers all {len(metadata['packages'])} packages in the build graph")
    return 0


if __name__ == "__main__":
    sys.exit(main())
