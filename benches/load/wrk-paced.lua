-- wrk at a fixed request rate, used when oha is not available. Each connection waits
-- `pace_ms` after each response before sending its next request (wrk's delay()), so the rate
-- is at most connections * 1000 / pace_ms per second. Latency is measured from the actual
-- send, not the intended one (no coordinated-omission correction): it is only honest at a
-- rate the server holds with room to spare, which is how run.sh uses it.
local pace_ms = tonumber(os.getenv("WRK_PACE_MS") or "8")

delay = function()
  return pace_ms
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
