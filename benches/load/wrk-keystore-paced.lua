-- wrk at a fixed rate (each connection waits $WRK_PACE_MS after each response, as
-- wrk-paced.lua) sending the keys of the file $WRK_TOKENS in rotation, one per request: with
-- keys never looked up before, every request is a key-store cache miss (key_store.sh).
local pace_ms = tonumber(os.getenv("WRK_PACE_MS") or "10")
local keys = {}
for line in io.lines(os.getenv("WRK_TOKENS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
local i = 0

request = function()
  i = i % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. keys[i] })
end

delay = function()
  return pace_ms
end

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk-report.lua")
