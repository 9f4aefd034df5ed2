-- wrk script for bench/serving.py: POST the JSON body in the file named by $BODY to the URL on wrk's command
-- line, count every response whose status is not 200, and print one line "BENCH_JSON {...}" at the end with
-- the request count, the duration, the latency percentiles (microseconds) and the errors.
--   BODY=body.json wrk -t1 -c8 -d10s -s bench/wrk/post.lua http://127.0.0.1:8080/v2/models/hgb/infer
-- AUTHORIZATION="Bearer corral_..." adds the header corral asks for (bench/serving.py passes the admin token).

local path = os.getenv("BODY")
local file = assert(io.open(path or "", "rb"), "set BODY to the file holding the request body")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local authorization = os.getenv("AUTHORIZATION")  -- corral's "Bearer <token>" (authentication is on); empty for peers
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not_200 = 0
  first_status = 0
end

function response(status, headers, body)
  if status ~= 200 then
    not_200 = not_200 + 1
    if first_status == 0 then
      first_status = status
    end
  end
end

function done(summary, latency, requests)
  local bad, status = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("not_200")
    if status == 0 then
      status = thread:get("first_status")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "not_200": %d, "first_bad_status": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, summary.bytes, bad, status,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
