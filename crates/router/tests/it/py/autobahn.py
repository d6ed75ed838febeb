"""Runs the Autobahn|Testsuite fuzzing client's cases (through kosoku, which
drives Autobahn's own case files from a Rust runner on Python 3) against a
WebSocket server, and prints each case's verdicts as one JSON object:
`{"1.1.1": ["OK", "OK"], ...}` — behaviour, then closing behaviour.

Usage: python autobahn.py HOST:PORT [-i CASE]... [-x CASE]... [-p N]
"""

import argparse
import asyncio
import json
import os
import sys

from kosoku import FailureError, run_fuzzingclient


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("-i", "--include", action="append")
    parser.add_argument("-x", "--exclude", action="append")
    parser.add_argument("-p", "--parallelism", type=int, default=4)
    args = parser.parse_args()
    try:
        results = await run_fuzzingclient(
            args.address, args.include, args.exclude, concurrency=args.parallelism
        )
    except FailureError as failure:
        # Failing cases are results too: the caller compares them.
        results = failure.results
    verdicts = {
        r.case_id: [r.behavior.value, r.behavior_close.value] for r in results
    }
    print(json.dumps(verdicts, sort_keys=True))


asyncio.run(main())
sys.stdout.flush()
# kosoku 0.1.0 sometimes aborts while the interpreter shuts down (after its
# work is done and printed): leave without that shutdown.
os._exit(0)
