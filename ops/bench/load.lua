-- wrk script of the bench (ops/bench/wrk_load.py builds the command line).
--
--   wrk ... -s load.lua URL -- MODE BODY_OR_SEATS...
--
-- MODE fixed   PATH BODY                                  the same POST each time (the ceiling)
-- MODE get     PATH                                       the same GET each time (the reads)
-- MODE paced   PATH PERIOD_MS                             the same GET, each connection pausing
--              PERIOD_MS between its requests (about connections * 1000 / PERIOD_MS per second)
-- MODE rotate  PATH1 PATH2 ...                            GETs of each path in turn, on ONE
--              connection (-c1 -t1), so requests to different paths are next to each other in
--              time; done() adds each path's answers and latency percentiles ("paths")
-- MODE seats   PATH VENUE EVENT ZONE COLUMNS FIRST LAST   distinct seats FIRST, FIRST+1, ... (a
--              seat index is row * COLUMNS + column - 1); past LAST it wraps to FIRST
-- MODE flash   PATH VENUE EVENT ZONE COLUMNS SEATS QUOTA PER_SEAT
--              exactly QUOTA purchase attempts, PER_SEAT consecutive ones on each seat (so they
--              race), seat k = floor(attempt / PER_SEAT) mod SEATS; then the thread stops.
--              Counts statuses and problem codes and the seat of every 201 (double sales).
--
-- seats and flash take the purchase request's headers after their numbers, one "Name: value"
-- argument each (ops/bench/purchase_requests.py decides them; the ceiling's POST has its own).
--
-- done() prints one line "BENCH_RESULT {json}" that the Python side parses. In flash mode the
-- thread prints "BENCH_QUOTA_DONE" once every attempt is answered: wrk's main thread sleeps for
-- the whole -d duration whatever the threads do, so the Python side then sends it SIGINT, which
-- ends that sleep (thread:stop() alone would not).
--
-- wrk (4.1) calls request() once before the run to check the script; that call is not sent,
-- so the first call is not counted (the bench runs wrk with one thread, where it happens).

local mode, path, body, period
local venue, event, zone, columns, first, last, seats, quota, per_seat
local issued, answered, reserved, checked = 0, 0, 0, false
statuses, codes, sold, sent = {}, {}, {}, 0
local threads = {}
-- rotate mode: the paths' requests, the one in flight and when it was sent; the latencies of
-- path i in the global took_<i>, a flat list (wrk's thread:get copies no nested table)
local gets, next_get, in_flight, sent_at, took = {}, 1, nil, 0, {}

local ffi = require("ffi") -- LuaJIT's: a monotonic clock in µs for rotate's latencies
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

function setup(thread)
  table.insert(threads, thread)
end

local function row_label(index)
  local label, n = "", index + 1
  while n > 0 do
    local rest = (n - 1) % 26
    label = string.char(65 + rest) .. label
    n = math.floor((n - 1) / 26)
  end
  return label
end

local headers = { ["Content-Type"] = "application/json" } -- the ceiling's POST
local purchase_headers = {}
-- the reads' token (bench.py puts an operator's in the environment: the back office's reads)
local get_headers = { Authorization = os.getenv("BENCH_AUTHORIZATION") }

local function take_headers(args, from)
  for i = from, #args do
    local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
    if not name then error("not a header: " .. args[i]) end
    purchase_headers[name] = value
  end
end

local function seat_request(index)
  local row = row_label(math.floor(index / columns))
  local column = index % columns + 1
  return wrk.format("POST", path, purchase_headers, string.format(
    '{"venueId":"%s","eventId":"%s","zoneId":%d,"row":"%s","column":"%d"}',
    venue, event, zone, row, column))
end

function init(args)
  mode, path = args[1], args[2]
  if mode == "fixed" then
    body = wrk.format("POST", path, headers, args[3])
  elseif mode == "get" or mode == "paced" then
    body = wrk.format("GET", path, get_headers)
    period = tonumber(args[3])
  elseif mode == "rotate" then
    for i = 2, #args do
      gets[i - 1] = wrk.format("GET", args[i], get_headers)
      took[i - 1] = {}
      _G["took_" .. (i - 1)] = took[i - 1]
    end
    body = gets[1]
  else
    venue, event, zone, columns = args[3], args[4], tonumber(args[5]), tonumber(args[6])
  end
  if mode == "seats" then
    first, last = tonumber(args[7]), tonumber(args[8])
    take_headers(args, 9)
  elseif mode == "flash" then
    seats, quota, per_seat = tonumber(args[7]), tonumber(args[8]), tonumber(args[9])
    take_headers(args, 10)
  end
  if mode == "rotate" then
    response = function(status)
      local list = took[in_flight]
      list[#list + 1] = now_us() - sent_at
      if status >= 400 then statuses[status] = (statuses[status] or 0) + 1 end
    end
  elseif mode ~= "flash" then
    response = nil -- wrk then skips parsing headers and bodies
  end
  if mode == "paced" then
    delay = function() return period end
  elseif mode ~= "flash" then
    delay = nil
  end
end

function request()
  if not checked then -- wrk's check of the script: never sent
    checked = true
    return (mode == "seats" or mode == "flash") and seat_request(0) or body
  end
  issued = issued + 1
  sent = issued
  if mode == "fixed" or mode == "get" or mode == "paced" then
    return body
  elseif mode == "rotate" then
    in_flight, sent_at = next_get, now_us()
    next_get = next_get % #gets + 1
    return gets[in_flight]
  elseif mode == "seats" then
    return seat_request(first + (issued - 1) % (last - first + 1))
  end
  local attempt = issued - 1
  if attempt >= quota then -- cannot happen with delay() below; kept for safety
    return wrk.format("GET", "/bench-quota-exhausted")
  end
  return seat_request(math.floor(attempt / per_seat) % seats)
end

-- wrk asks delay() before every request of a connection: reserve an attempt here and park the
-- connection for an hour once the quota is taken, so no request beyond it is sent.
function delay()
  if reserved >= quota then return 3600000 end
  reserved = reserved + 1
  return 0
end

function response(status, hdrs, resp_body)
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  if status == 201 then
    local row = string.match(resp_body, '"row"%s*:%s*"(%u+)"')
    local column = string.match(resp_body, '"column"%s*:%s*"(%d+)"')
    local seat = (row or "?") .. (column or "?")
    sold[seat] = (sold[seat] or 0) + 1
  else
    local code = string.match(resp_body, '"code"%s*:%s*"([%u_]+)"') or ("HTTP" .. status)
    codes[code] = (codes[code] or 0) + 1
  end
  if answered == quota then
    io.write("BENCH_QUOTA_DONE\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * p / 100))]
end

local function paths_json(lists)
  local parts = {}
  for _, list in ipairs(lists) do
    table.sort(list)
    table.insert(parts, string.format('{"n":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f}',
      #list, percentile(list, 50), percentile(list, 90), percentile(list, 99)))
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

local function json_map(map)
  local parts = {}
  for key, value in pairs(map) do
    table.insert(parts, string.format('"%s":%d', tostring(key), value))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local all_statuses, all_codes, all_sold, all_sent = {}, {}, {}, 0
  local by_path = {}
  for _, thread in ipairs(threads) do
    local i = 1
    while thread:get("took_" .. i) do
      by_path[i] = by_path[i] or {}
      for _, us in ipairs(thread:get("took_" .. i)) do table.insert(by_path[i], us) end
      i = i + 1
    end
    for k, v in pairs(thread:get("statuses") or {}) do all_statuses[k] = (all_statuses[k] or 0) + v end
    for k, v in pairs(thread:get("codes") or {}) do all_codes[k] = (all_codes[k] or 0) + v end
    for k, v in pairs(thread:get("sold") or {}) do all_sold[k] = (all_sold[k] or 0) + v end
    all_sent = all_sent + (thread:get("sent") or 0)
  end
  local seats_sold, double_sales = 0, 0
  for _, n in pairs(all_sold) do
    seats_sold = seats_sold + 1
    if n > 1 then double_sales = double_sales + (n - 1) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"sent":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"statuses":%s,"codes":%s,"seats_sold":%d,"double_sales":%d,"paths":%s}\n',
    summary.requests, summary.duration, all_sent,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    json_map(all_statuses), json_map(all_codes), seats_sold, double_sales,
    paths_json(by_path)))
end
