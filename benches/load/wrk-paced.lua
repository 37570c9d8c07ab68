-- wrk at a fixed request rate, used when oha is not available. Each connection waits
-- `pace_ms` after each response before sending its next request (wrk's delay()), so the rate
-- is at most connections * 1000 / pace_ms per second. Latency is measured from the actual
-- send, not the intended one (no coordinated-omission correction): it is only honest at a
-- rate the server holds with room to spare, which is how run.sh uses it.
local pace_ms = tonumber(os.getenv("WRK_PACE_MS") or "8")

delay = function()
  return pace_ms
end

-- The same JSON line at the end as the fixed-concurrency runs (wrk-report.lua, beside this file).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk-report.lua")
