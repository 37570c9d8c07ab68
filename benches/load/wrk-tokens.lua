-- wrk sending each request with the next token of the file $WRK_TOKENS (one per line), in
-- rotation. With more tokens than scopegate's per-thread token table holds, none is found
-- there again: every request pays a full verification, as with a client population that
-- never repeats a token.
local tokens = {}
for line in io.lines(os.getenv("WRK_TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local i = 0

request = function()
  i = i % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end

-- The same JSON line at the end as the other fixed-concurrency runs.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk-report.lua")
