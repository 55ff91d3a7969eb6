"""Lua shared by the seat scripts: the purchase rate limit, and the order library that holds,
frees and expires orders (`order_scripts.py` describes the keys it uses)."""

from __future__ import annotations

# Purchase attempts per buyer per event (GCRA): an attempt at `now` is let through when the
# theoretical arrival time `tat` is at most `tolerance` ms ahead, and then moves it `interval` ms
# on; a refused attempt moves nothing. interval = window / burst, tolerance = window - interval,
# so `burst` attempts pass at once and then one per interval. Returns 0, or the ms to wait.
RATE_LUA = """
local function rate_wait(rate, interval, tolerance)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', rate) or '0')
  if tat < now then tat = now end
  if tat - now > tolerance then return tat - now - tolerance end
  redis.call('SET', rate, tat + interval, 'PX', tat + interval - now)
  return 0
end
"""

# Order state changes; needs EVENT, BUYERS, HOLDS, OUTBOX, PREFIX and RID defined before it.
ORDER_LIB_LUA = """

local function zk(zone, part) return PREFIX .. 'zone:' .. zone .. ':' .. part end
local function okey(id) return PREFIX .. 'order:' .. id end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function iso(ms)
  local s = math.floor(ms / 1000)
  local frac = ms - s * 1000
  local days = math.floor(s / 86400)
  local sod = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(sod / 3600), math.floor((sod % 3600) / 60), sod % 60, frac)
end

local function row_label(i)
  local s, n = '', i + 1
  while n > 0 do
    local r = (n - 1) % 26
    s = string.char(65 + r) .. s
    n = math.floor((n - 1) / 26)
  end
  return s
end

-- an order: its snapshot (decoded), its cells {zone, bit, row label, ticket id, row index},
-- expiry ms
local function load(id)
  local r = redis.call('HMGET', okey(id), 'doc', 'cells', 'exp')
  if not r[1] then return nil end
  return cjson.decode(r[1]), cjson.decode(r[2]), tonumber(r[3])
end

-- the one way an order changes state: version + 1, stored, and its event in the outbox
local function transition(id, o, status, now)
  o.status = status
  o.version = o.version + 1
  o.updatedOn = iso(now)
  local doc = cjson.encode(o)
  redis.call('HSET', okey(id), 'doc', doc)
  redis.call('XADD', OUTBOX, '*', 'kind', 'order', 'order', doc, 'rid', RID)
  return doc
end

-- frees the cells the order still owns (and moves the zone's best-available marks back to
-- their rows and forgets their rows' longest runs, see best_available); returns how many
local function free_cells(id, cells)
  local freed = 0
  for _, c in ipairs(cells) do
    local owner = zk(c[1], 'owner')
    if redis.call('HGET', owner, c[2]) == c[4] then
      redis.call('HDEL', owner, c[2])
      redis.call('SETBIT', zk(c[1], 'sold'), c[2], 0)
      redis.call('SETBIT', zk(c[1], 'held'), c[2], 0)
      if redis.call('HGET', zk(c[1], 'holder'), c[2]) == id then
        redis.call('HDEL', zk(c[1], 'holder'), c[2])
      end
      redis.call('HINCRBY', zk(c[1], 'left'), c[3], 1)
      redis.call('HINCRBY', zk(c[1], 'left'), 'zone', 1)
      redis.call('HDEL', zk(c[1], 'runs'), c[3])
      redis.call('HINCRBY', EVENT, 'sold', -1)
      local front = zk(c[1], 'front')
      local marks = redis.call('HGETALL', front)
      for i = 1, #marks, 2 do
        if tonumber(marks[i + 1]) > c[5] then redis.call('HSET', front, marks[i], c[5]) end
      end
      freed = freed + 1
    end
  end
  return freed
end

-- marks the cells taken by the order (held: also in the held bitmap, with their holder)
local function take_cells(id, cells, held)
  for _, c in ipairs(cells) do
    redis.call('SETBIT', zk(c[1], 'sold'), c[2], 1)
    if held then
      redis.call('SETBIT', zk(c[1], 'held'), c[2], 1)
      redis.call('HSET', zk(c[1], 'holder'), c[2], id)
    end
    redis.call('HSET', zk(c[1], 'owner'), c[2], c[4])
    redis.call('HINCRBY', zk(c[1], 'left'), c[3], -1)
    redis.call('HINCRBY', zk(c[1], 'left'), 'zone', -1)
    redis.call('HINCRBY', EVENT, 'sold', 1)
  end
end

-- a paid order's seats stop being held (they stay taken, owned by their tickets)
local function settle_cells(id, cells)
  for _, c in ipairs(cells) do
    if redis.call('HGET', zk(c[1], 'holder'), c[2]) == id then
      redis.call('HDEL', zk(c[1], 'holder'), c[2])
      redis.call('SETBIT', zk(c[1], 'held'), c[2], 0)
    end
  end
end

local function count_buyer(buyer, n)
  local left = redis.call('HINCRBY', BUYERS, buyer, n)
  if left <= 0 then redis.call('HDEL', BUYERS, buyer) end
end

local function expire(id, o, cells, now)
  free_cells(id, cells)
  count_buyer(o.buyer, -#cells)
  redis.call('ZREM', HOLDS, id)
  return transition(id, o, 'EXPIRED', now)
end

-- expires the order if it is HELD and due; true if it did
local function expire_if_due(id, now)
  local o, cells, exp = load(id)
  if o and o.status == 'HELD' and now >= exp then
    expire(id, o, cells, now)
    return true
  end
  return false
end

-- expires due holds of the event (at most `max`, all when nil); returns how many
local function expire_due(now, max)
  local ids
  if max then
    ids = redis.call('ZRANGEBYSCORE', HOLDS, '-inf', now, 'LIMIT', 0, max)
  else
    ids = redis.call('ZRANGEBYSCORE', HOLDS, '-inf', now)
  end
  local n = 0
  for _, id in ipairs(ids) do
    if expire_if_due(id, now) then n = n + 1 else redis.call('ZREM', HOLDS, id) end
  end
  return n
end

-- whether every cell is free and the counters allow them all: nil, or the outcome code and,
-- for SEAT_TAKEN, the indexes (1-based) of the taken cells
local function check_cells(cells)
  local taken = {}
  for i, c in ipairs(cells) do
    if redis.call('EXISTS', zk(c[1], 'left')) == 0 then return 'NOT_LOADED' end
    if redis.call('GETBIT', zk(c[1], 'sold'), c[2]) == 1 then taken[#taken + 1] = i end
  end
  if #taken > 0 then return 'SEAT_TAKEN', taken end
  local per_row, per_zone = {}, {}
  for _, c in ipairs(cells) do
    local rk = c[1] .. '\\0' .. c[3]
    per_row[rk] = (per_row[rk] or 0) + 1
    per_zone[c[1]] = (per_zone[c[1]] or 0) + 1
  end
  for _, c in ipairs(cells) do
    local row_left = tonumber(redis.call('HGET', zk(c[1], 'left'), c[3]))
    if row_left == nil then return 'NOT_LOADED' end
    if row_left < per_row[c[1] .. '\\0' .. c[3]] then return 'ROW_FULL' end
  end
  for zone, n in pairs(per_zone) do
    if tonumber(redis.call('HGET', zk(zone, 'left'), 'zone') or '0') < n then
      return 'ZONE_FULL'
    end
  end
  local counts = redis.call('HMGET', EVENT, 'sold', 'capacity')
  if tonumber(counts[1]) + #cells > tonumber(counts[2]) then return 'EVENT_SOLD_OUT' end
  return nil
end
"""
