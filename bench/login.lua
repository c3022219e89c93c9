-- wrk script: POST /wx/login, every request with a code never sent before.
--   CODE_PREFIX  makes codes unique across runs (default "c")
--   STOP_AFTER   stop once this many responses have arrived (default: run for -d)
local prefix = os.getenv("CODE_PREFIX") or "c"
local stop_after = tonumber(os.getenv("STOP_AFTER") or "0")
local sent, answered = 0, 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
    sent = sent + 1
    return wrk.format("POST", "/wx/login", headers, '{"code":"' .. prefix .. "-" .. sent .. '"}')
end

if stop_after > 0 then
    response = function()
        answered = answered + 1
        if answered >= stop_after then
            wrk.thread:stop()
        end
    end
end
