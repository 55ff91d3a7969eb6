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
seats-left counters (a held seat is not left), `front` and `runs` what best available remembers
of rows without a block (see `best_available`). An order's seats are freed only where the
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
-- the best start for n seats in the free run [a, b] of a row `columns` wide, against the best
-- so far: no orphan (a single free seat left between the block and a taken seat or the row's
-- end) first, then closest to the centre (d = |2s + n - columns|), then leftmost. Only starts
-- a + 1 and e - 1 (e = b - n + 1, the run's last start) leave an orphan, and d is least at
-- c = floor((columns - n) / 2) clamped into [a, e] (the left of two as near) and grows away
-- from it, evenly on both sides. So the run's best is c, c - 1 or c + 1: if c leaves an orphan
-- (c = a + 1 or e - 1), a neighbour of c is a or e, which leaves none, and no start further
-- out on either side is nearer the centre than the nearer of c - 1 and c + 1 that leaves none;
-- a run of only orphan-leaving starts has two, c and a neighbour. The three are compared in
-- ascending order with the comparison every start once went through, so ties still go left.
-- Also keeps the longest free run seen (`longest`).
local function run_best(a, b, n, columns, best_s, best_orphan, best_d, longest)
  if b - a + 1 > longest then longest = b - a + 1 end
  local e = b - n + 1
  if e < a then return best_s, best_orphan, best_d, longest end
  local c = math.floor((columns - n) / 2)
  if c < a then c = a elseif c > e then c = e end
  for s = math.max(c - 1, a), math.min(c + 1, e) do
    local orphan = (s - a == 1) or (e - s == 1)
    local d = math.abs(2 * s + n - columns)
    if best_s == nil or (best_orphan and not orphan)
      or (orphan == best_orphan and d < best_d) then
      best_s, best_orphan, best_d = s, orphan, d
    end
  end
  return best_s, best_orphan, best_d, longest
end

-- row r's best 0-based first column for n adjacent free seats (or nil), and the row's longest
-- run of free seats. One GETRANGE; its bytes are read whole where they can be (a stretch of
-- 0xFF bytes, 8 taken seats each, or of 0x00 bytes, 8 free seats each, is passed by one
-- string.find), bit by bit (most significant first, as SETBIT numbers them) otherwise; the
-- row's first and last bytes may hold seats of the rows beside it. Bytes past the end of the
-- bitmap are free seats.
local function best_in_row(sold, r, columns, n)
  local first = r * columns
  local b0 = math.floor(first / 8)
  local raw = redis.call('GETRANGE', sold, b0, math.floor((first + columns - 1) / 8))
  local best_s, best_orphan, best_d, longest = nil, true, nil, 0
  local run = nil
  local j, len = 1, #raw
  while j <= len do
    local col = (b0 + j - 1) * 8 - first
    local v = string.byte(raw, j)
    if v == 255 then
      if run then
        best_s, best_orphan, best_d, longest = run_best(run, col - 1, n, columns, best_s,
          best_orphan, best_d, longest)
        run = nil
      end
      j = string.find(raw, '[^\\255]', j + 1) or len + 1
    elseif v == 0 then
      if run == nil then run = col < 0 and 0 or col end
      j = string.find(raw, '[^%z]', j + 1) or len + 1
    else
      local mask = 128
      for x = col, col + 7 do
        local taken = v >= mask
        if taken then v = v - mask end
        mask = mask / 2
        if x >= 0 and x < columns then
          if taken then
            if run then
              best_s, best_orphan, best_d, longest = run_best(run, x - 1, n, columns,
                best_s, best_orphan, best_d, longest)
              run = nil
            end
          elseif run == nil then
            run = x
          end
        end
      end
      j = j + 1
    end
  end
  if run == nil and len * 8 + b0 * 8 - first < columns then
    run = math.max(len * 8 + b0 * 8 - first, 0)
  end
  if run then
    best_s, best_orphan, best_d, longest = run_best(run, columns - 1, n, columns, best_s,
      best_orphan, best_d, longest)
  end
  return best_s, longest
end

-- A byte's free seats (most significant bit first): before its first taken seat, after its
-- last, and its longest run; built by `byte_runs` on the first row a call checks this way.
local LEAD, TRAIL, LONGEST = nil, nil, nil
local function byte_runs()
  LEAD, TRAIL, LONGEST = {}, {}, {}
  for v = 0, 255 do
    local lead, run, longest, mask, x = nil, 0, 0, 128, v
    for _ = 1, 8 do
      if x >= mask then
        x = x - mask
        if lead == nil then lead = run end
        if run > longest then longest = run end
        run = 0
      else
        run = run + 1
      end
      mask = mask / 2
    end
    if run > longest then longest = run end
    LEAD[v], TRAIL[v], LONGEST[v] = lead or 8, run, longest
  end
end

-- row r's longest run of free seats, the seats read a byte at a time (the seats of other rows
-- in its first and last bytes counted as taken; bytes past the end of the bitmap free): a row
-- without n adjacent free seats is passed without searching it.
local function longest_in_row(sold, r, columns)
  if LEAD == nil then byte_runs() end
  local first = r * columns
  local b0 = math.floor(first / 8)
  local raw = redis.call('GETRANGE', sold, b0, math.floor((first + columns - 1) / 8))
  local longest, chain = 0, 0
  local j, len = 1, #raw
  while j <= len do
    local col = (b0 + j - 1) * 8 - first
    local v = string.byte(raw, j)
    if col < 0 then
      local keep = 2 ^ (8 + col)
      v = 256 - keep + v % keep
    end
    if col + 8 > columns then
      local out = 2 ^ (col + 8 - columns)
      v = v - v % out + out - 1
    end
    if v == 0 then
      chain = chain + 8
      j = j + 1
    else
      if chain + LEAD[v] > longest then longest = chain + LEAD[v] end
      if LONGEST[v] > longest then longest = LONGEST[v] end
      chain = TRAIL[v]
      if v == 255 then
        j = string.find(raw, '[^\\255]', j + 1) or len + 1
      else
        j = j + 1
      end
    end
  end
  local past = math.max((b0 + len) * 8 - first, 0)
  if past < columns then chain = chain + columns - past end
  if chain > longest then longest = chain end
  return longest
end

-- The zone's `front` hash: quantity n → a row before which no row has n adjacent free seats.
-- Seats are only taken between two frees, so a row without an n-block stays without one: the
-- scan starts at the mark and leaves it at the row it chose (or past the last row); a freed seat
-- moves every mark back to its row (free_cells).
-- The zone's `runs` hash: row label → the longest run of free seats the row had when a scan
-- last found no block in it, for every quantity: while no seat of the row is freed (free_cells
-- deletes the row's field) its runs only shorten, so a row whose mark is below n is skipped
-- without reading its seats. After a seat is freed, a scan from its row decodes that row and
-- reads two counters of each row behind it. The first row a call reads is searched at once
-- (the warm case: the hint's row has the block); each later one is first checked by
-- `longest_in_row` and searched only if it has the block.
local function best_available(zone, rows, columns, n)
  local sold, left, front_key = zk(zone, 'sold'), zk(zone, 'left'), zk(zone, 'front')
  local runs = zk(zone, 'runs')
  local start = tonumber(redis.call('HGET', front_key, n) or '0')
  local found_r, found_label, found_s = nil, nil, nil
  local searched = 0
  for r = start, rows - 1 do
    local label = row_label(r)
    if tonumber(redis.call('HGET', left, label) or '0') >= n
      and tonumber(redis.call('HGET', runs, label) or columns) >= n then
      local s, longest = nil, nil
      if searched > 0 then longest = longest_in_row(sold, r, columns) end
      if longest == nil or longest >= n then
        s, longest = best_in_row(sold, r, columns, n)
        searched = searched + 1
      end
      if s then
        found_r, found_label, found_s = r, label, s
        break
      end
      redis.call('HSET', runs, label, longest)
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
