-- wrk script for bench/harness.py: an optional POST body of BENCH_BODY_BYTES
-- bytes, and a machine-readable summary line with every error counter and
-- the whole latency histogram (µs, count pairs), which the harness merges
-- over the slices of a figure.
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0")
local path = os.getenv("BENCH_PATH")

if body_bytes > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", body_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
if path and path ~= "" then
  wrk.path = path
end

done = function(summary, latency, requests)
  local e = summary.errors
  local hist = {}
  for i = 1, #latency do
    local us, count = latency(i)
    hist[#hist + 1] = string.format("%d,%d", us, count)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"hist":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(hist, ",")))
end
