-- wrk script: POST a realistic chat body with a bearer key; print the result as one JSON line.
-- Usage: wrk -s chat.lua URL -- BODY_FILE [BEARER_KEY]
-- The last line of wrk's stdout is "BENCH_JSON {...}" (latencies in microseconds).

function init(args)
   local f = assert(io.open(args[1], "rb"))
   local body = f:read("*a")
   f:close()
   wrk.method = "POST"
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "application/json"
   wrk.headers["User-Agent"] = "OpenAI/Python 1.54.0"
   if args[2] ~= nil and args[2] ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. args[2]
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local p = {}
   for _, q in ipairs({50, 90, 99, 99.9}) do
      p[#p + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
   end
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"percentiles":{%s}}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max, latency.stdev, table.concat(p, ",")))
end
