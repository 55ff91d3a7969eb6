"""The Lua of the box office: hold, confirm, cancel, refund, expiry, sweep; one EVALSHA each.

Every script gets the same fixed KEYS (all in the event's slot, see `keys.py`):

    KEYS[1] event hash (sold/capacity)   KEYS[2] buyers hash      KEYS[3] holds sorted set
    KEYS[4] payments hash                KEYS[5] outbox stream    KEYS[6] the order's hash

and ARGV[1] = `keys.event_prefix(event)`, ARGV[2] = the request id. The zone keys and the keys
of *other* orders a script meets (an expired hold it frees) are built from that prefix inside
the script, exactly as `keys.py` names them; they share the event's hash tag, so the call stays
in one Redis Cluster slot.

Seat state per zone: `sold` bitmap = taken (held or paid: the single-seat purchase sees a held
seat as SEAT_TAKEN, unchanged), `held` bitmap = held, not paid (a subset of `sold`), `owner`
hash bit → ticket id (held or paid), `holder` hash bit → order id (held seats only), `left` the
seats-left counters (a held seat is not left). An order's seats are freed only where the
owner is still that seat's ticket id.

The time is Redis TIME in ms. A hold is expired iff now ≥ its `exp`; any script that decides
availability or a buyer's count (hold, late confirm) first expires every due hold of the event,
and the scripts on one order (get, confirm, cancel, refund) first expire that order if due, so
expiry happens once, in whichever call meets it first, with its event.

Outbox entries: `kind=order`, `order=<snapshot JSON>`, `rid`; and for a late payment that
cannot be honoured `kind=late_payment`, `order`, `paymentId`, `amount`, `currency`, `reason`,
`rid` (the money must be refunded).
"""

from __future__ import annotations

ORDER_LIB_LUA = """
local EVENT, BUYERS, HOLDS = KEYS[1], KEYS[2], KEYS[3]
local PAYMENTS, OUTBOX, ORDER = KEYS[4], KEYS[5], KEYS[6]
local PREFIX, RID = ARGV[1], ARGV[2]

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

-- an order: its snapshot (decoded), its cells {zone, bit, row label, ticket id}, expiry ms
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

-- frees the cells the order still owns; returns how many
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
      redis.call('HINCRBY', EVENT, 'sold', -1)
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

# Best available in one zone: the front-most row with N adjacent free seats; in it the block
# closest to the row's centre, avoiding a block that leaves one free seat alone between it and
# a taken seat or the row's end when another block in that row leaves none; ties go left.
# Returns the row index and the 0-based first column, or nil.
BEST_LUA = """
local function row_bits(sold, r, columns)
  local start = r * columns
  local b0 = math.floor(start / 8)
  local raw = redis.call('GETRANGE', sold, b0, math.floor((start + columns - 1) / 8))
  local bits = {}
  for i = 0, columns - 1 do
    local bit = start + i
    local byte = string.byte(raw, math.floor(bit / 8) - b0 + 1) or 0
    bits[i] = math.floor(byte / 2 ^ (7 - bit % 8)) % 2
  end
  return bits
end

local function best_in_row(bits, columns, n)
  local best_s, best_orphan, best_d = nil, true, nil
  local i = 0
  while i < columns do
    if bits[i] == 0 then
      local a = i
      while i < columns and bits[i] == 0 do i = i + 1 end
      local b = i - 1
      for s = a, b - n + 1 do
        local orphan = (s - a == 1) or (b - (s + n - 1) == 1)
        local d = math.abs(2 * s + n - columns)
        if best_s == nil or (best_orphan and not orphan)
          or (orphan == best_orphan and d < best_d) then
          best_s, best_orphan, best_d = s, orphan, d
        end
      end
    else
      i = i + 1
    end
  end
  return best_s
end

local function best_available(zone, rows, columns, n)
  local sold, left = zk(zone, 'sold'), zk(zone, 'left')
  for r = 0, rows - 1 do
    local label = row_label(r)
    if tonumber(redis.call('HGET', left, label) or '0') >= n then
      local s = best_in_row(row_bits(sold, r, columns), columns, n)
      if s then return r, label, s end
    end
  end
  return nil
end
"""

RATE_CHECK_LUA = """
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

# KEYS[7]: the buyer's rate key. ARGV: 3 order id, 4 the order skeleton JSON (orderId, venueId,
# eventId, buyer, currency, total, seats [{ticketId, zoneId, price[, row, column]}]), 5 cells
# JSON ([[zone, bit, row label, ticket id]]; empty for best available), 6 hold ms, 7 seats per
# buyer, 8 rate interval ms, 9 rate tolerance ms, 10 canonical total; best available: 11 zone,
# 12 rows, 13 columns, 14 quantity.
# Replies: {'OK', doc} | {'EXISTS', doc} | {'SEAT_TAKEN', json of taken indexes (0-based)} |
# {'RATE_LIMITED', ms} | {code}.
HOLD_LUA = (
    ORDER_LIB_LUA
    + BEST_LUA
    + RATE_CHECK_LUA
    + """
if redis.call('EXISTS', EVENT) == 0 then return {'NOT_LOADED'} end
local id = ARGV[3]
local existing = redis.call('HGET', ORDER, 'doc')
if existing then return {'EXISTS', existing} end
local wait = rate_wait(KEYS[7], tonumber(ARGV[8]), tonumber(ARGV[9]))
if wait > 0 then return {'RATE_LIMITED', tostring(wait)} end
local now = now_ms()
expire_due(now, nil)
local o = cjson.decode(ARGV[4])
local cells = cjson.decode(ARGV[5])
local n = #o.seats
local count = tonumber(redis.call('HGET', BUYERS, o.buyer) or '0')
if count + n > tonumber(ARGV[7]) then return {'BUYER_LIMIT_REACHED'} end
if ARGV[11] then
  local zone, rows, columns = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
  if redis.call('EXISTS', zk(zone, 'left')) == 0 then return {'NOT_LOADED'} end
  if tonumber(redis.call('HGET', zk(zone, 'left'), 'zone') or '0') < n then
    return {'ZONE_FULL'}
  end
  local ev = redis.call('HMGET', EVENT, 'sold', 'capacity')
  if tonumber(ev[1]) + n > tonumber(ev[2]) then return {'EVENT_SOLD_OUT'} end
  local r, label, s = best_available(zone, rows, columns, n)
  if r == nil then return {'NOT_ENOUGH_ADJACENT_SEATS'} end
  cells = {}
  for k, seat in ipairs(o.seats) do
    seat.row = label
    seat.column = tostring(s + k)
    cells[k] = {zone, r * columns + s + k - 1, label, seat.ticketId}
  end
end
local outcome, taken = check_cells(cells)
if outcome == 'SEAT_TAKEN' then
  for k = 1, #taken do taken[k] = taken[k] - 1 end
  return {outcome, cjson.encode(taken)}
end
if outcome then return {outcome} end
take_cells(id, cells, true)
count_buyer(o.buyer, n)
local exp = now + tonumber(ARGV[6])
redis.call('ZADD', HOLDS, exp, id)
o.status = 'HELD'
o.version = 1
o.createdOn = iso(now)
o.updatedOn = o.createdOn
o.expiresAt = iso(exp)
o.paymentId = cjson.null
local doc = cjson.encode(o)
redis.call('HSET', ORDER, 'doc', doc, 'cells', cjson.encode(cells), 'exp', exp,
  'total', ARGV[10])
redis.call('XADD', OUTBOX, '*', 'kind', 'order', 'order', doc, 'rid', RID)
return {'OK', doc}
"""
)

# ARGV: 3 order id, 4 payment id, 5 canonical amount, 6 currency, 7 seats per buyer.
# Replies: {'OK', doc} (→ PAID) | {'NO_CHANGE', doc} | {code[, doc]}.
CONFIRM_LUA = (
    ORDER_LIB_LUA
    + """
if redis.call('EXISTS', EVENT) == 0 then return {'NOT_LOADED'} end
local id, payment, amount, currency = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', ORDER) == 0 then return {'ORDER_NOT_FOUND'} end
local now = now_ms()
expire_due(now, nil)
local o, cells = load(id)
local doc = redis.call('HGET', ORDER, 'doc')
local bound = redis.call('HGET', PAYMENTS, payment)
if bound and bound ~= id then return {'ORDER_NOT_PAYABLE', doc} end
if o.status == 'PAID' then
  if o.paymentId == payment then return {'NO_CHANGE', doc} end
  return {'ORDER_NOT_PAYABLE', doc}
end
if o.status ~= 'HELD' and o.status ~= 'EXPIRED' then return {'ORDER_NOT_PAYABLE', doc} end
if amount ~= redis.call('HGET', ORDER, 'total') or currency ~= o.currency then
  return {'AMOUNT_MISMATCH', doc}
end
if o.status == 'HELD' then
  settle_cells(id, cells)
  redis.call('ZREM', HOLDS, id)
else
  if redis.call('HEXISTS', ORDER, 'rejected:' .. payment) == 1 then
    return {'HOLD_EXPIRED', doc}
  end
  local reason = check_cells(cells)
  if reason == nil then
    local count = tonumber(redis.call('HGET', BUYERS, o.buyer) or '0')
    if count + #cells > tonumber(ARGV[7]) then reason = 'BUYER_LIMIT_REACHED' end
  end
  if reason then
    redis.call('HSET', PAYMENTS, payment, id)
    redis.call('HSET', ORDER, 'rejected:' .. payment, reason)
    redis.call('XADD', OUTBOX, '*', 'kind', 'late_payment', 'order', doc,
      'paymentId', payment, 'amount', amount, 'currency', currency, 'reason', reason, 'rid', RID)
    return {'HOLD_EXPIRED', doc}
  end
  take_cells(id, cells, false)
  count_buyer(o.buyer, #cells)
end
redis.call('HSET', PAYMENTS, payment, id)
o.paymentId = payment
o.paidOn = iso(now)
return {'OK', transition(id, o, 'PAID', now)}
"""
)

# ARGV: 3 order id, 4 caller, 5 '1' if the caller is an operator.
CANCEL_LUA = (
    ORDER_LIB_LUA
    + """
if redis.call('EXISTS', EVENT) == 0 then return {'NOT_LOADED'} end
local id = ARGV[3]
local o, cells = load(id)
if o == nil or (o.buyer ~= ARGV[4] and ARGV[5] ~= '1') then return {'ORDER_NOT_FOUND'} end
local now = now_ms()
if expire_if_due(id, now) then o, cells = load(id) end
local doc = redis.call('HGET', ORDER, 'doc')
if o.status == 'CANCELLED' then return {'NO_CHANGE', doc} end
if o.status == 'PAID' then return {'ORDER_PAID', doc} end
if o.status ~= 'HELD' then return {'ORDER_CLOSED', doc} end
free_cells(id, cells)
count_buyer(o.buyer, -#cells)
redis.call('ZREM', HOLDS, id)
return {'OK', transition(id, o, 'CANCELLED', now)}
"""
)

# ARGV: 3 order id, 4 payment id ('' = an operator's refund, any payment).
REFUND_LUA = (
    ORDER_LIB_LUA
    + """
if redis.call('EXISTS', EVENT) == 0 then return {'NOT_LOADED'} end
local id, payment = ARGV[3], ARGV[4]
local o, cells = load(id)
if o == nil then return {'ORDER_NOT_FOUND'} end
local now = now_ms()
if expire_if_due(id, now) then o, cells = load(id) end
local doc = redis.call('HGET', ORDER, 'doc')
if o.status ~= 'PAID' and o.status ~= 'REFUNDED' then return {'ORDER_NOT_PAID', doc} end
if payment ~= '' and payment ~= o.paymentId then return {'ORDER_NOT_PAID', doc} end
if o.status == 'REFUNDED' then return {'NO_CHANGE', doc} end
free_cells(id, cells)
count_buyer(o.buyer, -#cells)
o.refundedOn = iso(now)
return {'OK', transition(id, o, 'REFUNDED', now)}
"""
)

# ARGV: 3 order id. The order's live state (expired first if due).
GET_LUA = (
    ORDER_LIB_LUA
    + """
if redis.call('EXISTS', ORDER) == 0 then return {'ORDER_NOT_FOUND'} end
if redis.call('EXISTS', EVENT) == 1 then expire_if_due(ARGV[3], now_ms()) end
return {'OK', redis.call('HGET', ORDER, 'doc')}
"""
)

# ARGV: 3 at most this many holds. Returns the number of holds expired by this call.
SWEEP_LUA = (
    ORDER_LIB_LUA
    + """
if redis.call('EXISTS', EVENT) == 0 then return 0 end
return expire_due(now_ms(), tonumber(ARGV[3]))
"""
)

# The zone map: sold and held bitmaps as hex. KEYS: sold, held, left.
ZONE_MAP_LUA = """
if redis.call('EXISTS', KEYS[3]) == 0 then return 'NOT_LOADED' end
local out = {}
for k = 1, 2 do
  local raw = redis.call('GET', KEYS[k]) or ''
  local hex = {}
  for i = 1, #raw do hex[i] = string.format('%02x', string.byte(raw, i)) end
  out[k] = table.concat(hex)
end
return out
"""
