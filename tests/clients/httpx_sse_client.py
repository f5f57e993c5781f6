"""Reads N events from an SSE URL with httpx + httpx-sse and prints each as a JSON line.

Usage: httpx_sse_client.py URL N
Prints {"type": ..., "data": ..., "lastEventId": ...} per event, in order, then exits.
"""

import json
import sys

import httpx
from httpx_sse import connect_sse


def main() -> int:
    url, count = sys.argv[1], int(sys.argv[2])
    received = 0
    with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
        with connect_sse(client, "GET", url) as source:
            source.response.raise_for_status()
            for sse in source.iter_sse():
                line = {"type": sse.event, "data": sse.data, "lastEventId": sse.id}
                print(json.dumps(line, ensure_ascii=False), flush=True)
                received += 1
                if received == count:
                    return 0
    print(f"stream ended after {received} of {count} events", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
