-- bench/predict/predict.lua: wrk script POSTing /predict JSON bodies.
--   MODE=cold  every request has unique features (all prediction-cache misses)
--   MODE=warm  one fixed body (all hits once warmed)
--   MODEL=mlp  model name; SALT makes cold runs unique across runs
-- Warm mode defines no request()/response() callbacks: wrk then sends its prebuilt request
-- without calling Lua, as it does for the static GET it is compared with. wrk itself counts
-- non-2xx answers ("Non-2xx or 3xx responses").
wrk.method = "POST"
wrk.path = "/predict"
wrk.headers["Content-Type"] = "application/json"
local mode = os.getenv("MODE") or "warm"
local model = os.getenv("MODEL") or "mlp"
local salt = os.getenv("SALT") or "0"
local rest = {}
for i = 3, 64 do rest[#rest + 1] = string.format("%.4f", (i % 17) / 17) end
local tail = table.concat(rest, ",") .. "]}"
local head = '{"model":"' .. model .. '","features":[' .. salt .. ","

if mode == "warm" then
  wrk.body = head .. "0.5," .. tail
else
  local n = 0
  local tid = 0
  function setup(thread)
    tid = tid + 1
    thread:set("tid", tid)
  end
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil, head .. ((tid or 0) * 100000000 + n) .. "," .. tail)
  end
end
