-- wrk script: POST /wx/login, every request with a code never sent before.
--   CODE_PREFIX  makes codes unique across runs (default "c")
local prefix = os.getenv("CODE_PREFIX") or "c"
local sent = 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
    sent = sent + 1
    return wrk.format("POST", "/wx/login", headers, '{"code":"' .. prefix .. "-" .. sent .. '"}')
end
