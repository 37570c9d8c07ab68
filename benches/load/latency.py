#!/usr/bin/env python3
"""One fixed-rate latency run's output -> one row of raw.jsonl.

    latency.py TOOL ROUND TARGET RATE < tool output

TOOL is `oha` (its `--output-format json` document) or `wrk` (the JSON line printed by
wrk-paced.lua). The row carries p50/p99 in microseconds, the request count, the achieved
rate, and the errors: non-2xx statuses plus transport errors.
"""

import json
import sys


def from_oha(doc):
    pct = doc["latencyPercentiles"]
    codes = {int(k): v for k, v in doc.get("statusCodeDistribution", {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    failed = sum(doc.get("errorDistribution", {}).values())
    requests = sum(codes.values()) + failed
    return {
        "p50_us": pct["p50"] * 1e6,
        "p99_us": pct["p99"] * 1e6,
        "requests": requests,
        "achieved_rps": doc["summary"]["requestsPerSec"],
        "errors": requests - ok,
    }


def from_wrk(w):
    return {
        "p50_us": w["p50_us"],
        "p99_us": w["p99_us"],
        "requests": w["requests"],
        "achieved_rps": w["requests"] / (w["duration_us"] / 1e6),
        "errors": w["status"] + w["connect"] + w["read"] + w["write"] + w["timeout"],
    }


def main() -> None:
    tool, rnd, target, rate = sys.argv[1:5]
    text = sys.stdin.read()
    if tool == "oha":
        row = from_oha(json.loads(text))
    else:
        row = from_wrk(json.loads(text.strip().splitlines()[-1]))
    row.update({"phase": "latency", "tool": tool, "round": int(rnd), "target": target,
                "rate": int(rate)})
    print(json.dumps(row))


if __name__ == "__main__":
    main()
