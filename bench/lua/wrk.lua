-- wrk script for bench/harness.py: an optional POST body of BENCH_BODY_BYTES
-- bytes, and a machine-readable summary line with the percentiles wrk's own
-- report lacks (p99.9) and every error counter.
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
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
