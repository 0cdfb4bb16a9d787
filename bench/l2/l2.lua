-- bench/l2/l2.lua: GET <prefix>NNNNN.bin, object drawn uniformly at random (default) or
-- from Zipf(s) over N objects (rank 1 = <prefix>00001.bin is the most popular).
-- Env: L2_NOBJ (4000), L2_DIST (uniform | zipf), L2_ZIPF_S (0.99), L2_PREFIX (/l2/).
-- Requests are pre-formatted in init(); request() is one math.random() (plus a binary
-- search over the CDF for Zipf, ~12 steps), so the per-request Lua cost is small.
-- At the end prints one RESULT line in the shared harness' format
-- (../shared/bench/http/lua/report.lua).
local N = tonumber(os.getenv("L2_NOBJ") or "4000")
local DIST = os.getenv("L2_DIST") or "uniform"
local S = tonumber(os.getenv("L2_ZIPF_S") or "0.99")
local PREFIX = os.getenv("L2_PREFIX") or "/l2/"
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

local reqs, cdf

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  math.random(); math.random()
  reqs = {}
  for i = 1, N do reqs[i] = wrk.format("GET", string.format("%s%05d.bin", PREFIX, i)) end
  if DIST == "zipf" then
    cdf = {}
    local sum = 0
    for i = 1, N do sum = sum + 1 / (i ^ S); cdf[i] = sum end
    for i = 1, N do cdf[i] = cdf[i] / sum end
  end
end

function request()
  if not cdf then
    return reqs[math.random(N)]
  end
  local r = math.random()
  local lo, hi = 1, N
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < r then lo = mid + 1 else hi = mid end
  end
  return reqs[lo]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d mean_us=%.1f max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
