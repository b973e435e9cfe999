-- wrk script for the bench: POSTs registrations with unique e-mails and reports JSON.
-- Arguments after `--`: a nonce unique to the run, then "async" to add Prefer: respond-async.
-- The bench parses the line starting "BENCH_JSON " that done() writes.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   nonce = args[1] or "run"
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   if args[2] == "async" then
      wrk.headers["Prefer"] = "respond-async"
   end
   sent = 0
   statuses = {}
   no_retry_after = 0
end

function request()
   sent = sent + 1
   local body = string.format(
      '{"email":"w-%s-%d-%d@bench.example","name":"Bench User","badge_type":"STD"}',
      nonce, id, sent)
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status == 503 and not (headers["Retry-After"] or headers["retry-after"]) then
      no_retry_after = no_retry_after + 1
   end
end

function done(summary, latency, requests)
   local counts = {}
   local missing = 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + n
      end
      missing = missing + thread:get("no_retry_after")
   end
   local parts = {}
   for status, n in pairs(counts) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"statuses":{%s},"no_retry_after":%d,'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d},'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, table.concat(parts, ","), missing,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.timeout))
end
