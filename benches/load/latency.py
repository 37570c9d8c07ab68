#!/usr/bin/env python3
"""One fixed-rate latency run's output -> one row of raw.jsonl.

    latency.py TOOL ROUND TARGET RATE PROXY_TICKS FOREIGN_CPU_PCT < tool output

TOOL is `oha` (its `--output-format json` document) or `wrk` (the JSON line printed by
wrk-paced.lua). The row carries p50/p99 in microseconds, the request count, the achieved
rate, the errors (non-2xx statuses plus transport errors), and the proxy's CPU clock ticks
over the run (`null` when there is no proxy), and the share of the CPUs something other than
this benchmark used meanwhile.
"""

import json
import sys


# Requests oha cancels when the duration ends (run.sh asks it to wait for them instead):
# not an answer from the server, so not an error of the target.
DEADLINE = "aborted due to deadline"


def from_oha(doc):
    pct = doc["latencyPercentiles"]
    codes = {int(k): v for k, v in doc.get("statusCodeDistribution", {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    errors = dict(doc.get("errorDistribution", {}))
    aborted = errors.pop(DEADLINE, 0)
    return {
        "p50_us": pct["p50"] * 1e6,
        "p99_us": pct["p99"] * 1e6,
        "requests": sum(codes.values()),
        "achieved_rps": doc["summary"]["requestsPerSec"],
        "errors": sum(codes.values()) - ok + sum(errors.values()),
        "error_kinds": errors,
        "aborted_at_deadline": aborted,
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
    tool, rnd, target, rate, ticks, foreign = sys.argv[1:7]
    text = sys.stdin.read()
    if tool == "oha":
        row = from_oha(json.loads(text))
    else:
        row = from_wrk(json.loads(text.strip().splitlines()[-1]))
    row.update({"phase": "latency", "tool": tool, "round": int(rnd), "target": target,
                "rate": int(rate), "proxy_ticks": None if ticks == "null" else int(ticks),
                "foreign_cpu_pct": float(foreign)})
    print(json.dumps(row))


if __name__ == "__main__":
    main()
