-- wrk script: POST the bodies of a file (one url-encoded form per line), each in turn.
-- wrk -s bench/post.lua URL -- BODIES_FILE CONTENT_TYPE USER_AGENT
-- Prints one "BENCH_JSON {...}" line at the end for the driver to read.
local bodies, count, position = {}, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    count = count + 1
    bodies[count] = line
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2]
  wrk.headers["User-Agent"] = args[3]
end

function request()
  position = position % count + 1
  return wrk.format(nil, nil, nil, bodies[position])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
