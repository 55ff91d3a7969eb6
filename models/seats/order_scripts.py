"""The Lua of the box office: hold, confirm, cancel, refund, expiry, sweep; one EVALSHA each.

Every script gets the same fixed KEYS (all in the event's slot, see `keys.py`):

    KEYS[1] event hash (sold/capacity)   KEYS[2] buyers hash      KEYS[3] holds sorted set
    KEYS[4] payments hash                KEYS[5] outbox stream    KEYS[6] the order's hash

and ARGV[1] = `keys.event_prefix(event)`, ARGV[2] = the request id. The zone keys and the keys
of *other* orders a script meets (an expired hold it frees) are built from that prefix inside
the script, exactly as `keys.py` names them; they share the event's hash tag, so the call stays
in one Redis Cluster slot.

The single-seat purchase (`scripts.PURCHASE_LUA`) stores its sale as an order of the same
layout, `PAID` at version 1 with `paymentId` and `expiresAt` null (`exp` 0, never in `holds`),
so these scripts get, refund (an operator's: no payment id matches null) and refuse to confirm
or cancel it like any paid order.

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
cannot be honoured `kind=late_payment_rejected`, `payment` = JSON {orderId, eventId,
paymentId, amount, currency, reason, rejectedOn}, `order` (the snapshot), `rid` (the money must
be refunded: the projection keeps it in `late_payment`).
"""

from __future__ import annotations

from models.seats.lua_lib import ORDER_LIB_LUA, RATE_LUA

# The names the library below uses, for the order scripts' fixed KEYS and ARGV.
ORDER_KEYS_LUA = """
local EVENT, BUYERS, HOLDS = KEYS[1], KEYS[2], KEYS[3]
local PAYMENTS, OUTBOX, ORDER = KEYS[4], KEYS[5], KEYS[6]
local PREFIX, RID = ARGV[1], ARGV[2]
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

-- The zone's `front` hash: quantity n → a row before which no row has n adjacent free seats.
-- Seats are only taken between two frees, so a row without an n-block stays without one: the
-- scan starts at the mark and leaves it at the row it chose (or past the last row); a freed seat
-- moves every mark back to its row (free_cells).
local function best_available(zone, rows, columns, n)
  local sold, left, front_key = zk(zone, 'sold'), zk(zone, 'left'), zk(zone, 'front')
  local start = tonumber(redis.call('HGET', front_key, n) or '0')
  local found_r, found_label, found_s = nil, nil, nil
  for r = start, rows - 1 do
    local label = row_label(r)
    if tonumber(redis.call('HGET', left, label) or '0') >= n then
      local s = best_in_row(row_bits(sold, r, columns), columns, n)
      if s then
        found_r, found_label, found_s = r, label, s
        break
      end
    end
  end
  local mark = found_r or rows
  if mark ~= start then redis.call('HSET', front_key, n, mark) end
  return found_r, found_label, found_s
end
"""

# KEYS[7]: the buyer's rate key; KEYS[8] (when the order id names the event's bucket): the
# order's event lookup (`keys.order_event_key`), set to the event id.
# ARGV: 3 order id, 4 the order skeleton JSON (orderId, venueId, eventId, buyer, currency,
# total, seats [{ticketId, zoneId, price[, row, column]}]), 5 cells JSON ([[zone, bit, row
# label, ticket id, row index]]; empty for best available), 6 hold ms, 7 seats per buyer,
# 8 rate interval ms, 9 rate tolerance ms, 10 canonical total; best available: 11 zone,
# 12 rows, 13 columns, 14 quantity.
# Replies: {'OK', doc} | {'EXISTS', doc} | {'SEAT_TAKEN', json of taken indexes (0-based)} |
# {'RATE_LIMITED', ms} | {code}.
HOLD_LUA = (
    ORDER_KEYS_LUA
    + ORDER_LIB_LUA
    + BEST_LUA
    + RATE_LUA
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
    cells[k] = {zone, r * columns + s + k - 1, label, seat.ticketId, r}
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
if KEYS[8] then redis.call('SET', KEYS[8], o.eventId) end
redis.call('XADD', OUTBOX, '*', 'kind', 'order', 'order', doc, 'rid', RID)
return {'OK', doc}
"""
)

# ARGV: 3 order id, 4 payment id, 5 canonical amount, 6 currency, 7 seats per buyer.
# Replies: {'OK', doc} (→ PAID) | {'NO_CHANGE', doc} | {code[, doc]}.
CONFIRM_LUA = (
    ORDER_KEYS_LUA
    + ORDER_LIB_LUA
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
    local rejected = cjson.encode({orderId = id, eventId = o.eventId, paymentId = payment,
      amount = amount, currency = currency, reason = reason, rejectedOn = iso(now)})
    redis.call('XADD', OUTBOX, '*', 'kind', 'late_payment_rejected', 'payment', rejected,
      'order', doc, 'rid', RID)
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
    ORDER_KEYS_LUA
    + ORDER_LIB_LUA
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
    ORDER_KEYS_LUA
    + ORDER_LIB_LUA
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
    ORDER_KEYS_LUA
    + ORDER_LIB_LUA
    + """
if redis.call('EXISTS', ORDER) == 0 then return {'ORDER_NOT_FOUND'} end
if redis.call('EXISTS', EVENT) == 1 then expire_if_due(ARGV[3], now_ms()) end
return {'OK', redis.call('HGET', ORDER, 'doc')}
"""
)

# ARGV: 3 at most this many holds. Returns the number of holds expired by this call.
SWEEP_LUA = (
    ORDER_KEYS_LUA
    + ORDER_LIB_LUA
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
