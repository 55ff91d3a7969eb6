"""Best available's row search (`BEST_LUA`'s `best_in_row`) on real Redis against the rule it
implements, tried start by start (and the row's longest free run, which best available keeps
for rows without the block): the previous Lua, which decoded the row seat by seat and
compared every start of every free run, kept here as the reference, and the same rule in
Python. Rows of 1-300 seats at any offset in the bitmap (so the row's first and last bytes hold
seats of the rows beside it), sparse to dense, sometimes cut short by the bitmap's end."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.catalog import row_label
from models.seats import keys
from models.seats.lua_lib import ORDER_LIB_LUA
from models.seats.order_scripts import BEST_LUA, ORDER_KEYS_LUA

MAX_N = 8

# The search before it read bytes whole: every seat decoded, every start compared.
REFERENCE_LUA = """
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
"""

# ARGV: row index, columns, largest n. Returns the first column for n = 1.. (-1: none); the
# production search also the row's longest free run, as the search and as the quick check
# (`longest_in_row`) find it, last.
REFERENCE_CALL = (
    REFERENCE_LUA
    + """
local r, columns, out = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
local bits = row_bits(KEYS[1], r, columns)
for n = 1, tonumber(ARGV[3]) do out[n] = best_in_row(bits, columns, n) or -1 end
return out
"""
)

PRODUCTION_CALL = (
    BEST_LUA
    + """
local r, columns, out = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
for n = 1, tonumber(ARGV[3]) do out[n] = best_in_row(KEYS[1], r, columns, n) or -1 end
local _, longest = best_in_row(KEYS[1], r, columns, 1)
out[#out + 1] = longest
out[#out + 1] = longest_in_row(KEYS[1], r, columns)
return out
"""
)


def longest_run(row: list[bool]) -> int:
    return max((len(run) for run in "".join("x" if t else "." for t in row).split("x")), default=0)


def exhaustive(row: list[bool], n: int) -> int:
    """The rule start by start: fewest orphans, then nearest the centre, then leftmost."""
    columns, found = len(row), []
    for s in range(columns - n + 1):
        if any(row[s : s + n]):
            continue
        left = (s == 1 and not row[0]) or (s >= 2 and row[s - 2] and not row[s - 1])
        end = s + n
        right = (end == columns - 1 and not row[end]) or (
            end <= columns - 2 and not row[end] and row[end + 1]
        )
        found.append((left or right, abs(2 * s + n - columns), s))
    return min(found)[2] if found else -1


@st.composite
def rows(draw) -> tuple[int, int, list[bool], bytes]:
    """(row index, columns, the row's seats taken, the zone's bitmap)."""
    columns = draw(st.integers(1, 300))
    index = draw(st.integers(0, 9))
    if draw(st.booleans()):  # runs of free and taken seats, many near the block sizes
        runs = draw(st.lists(st.tuples(st.integers(0, 12), st.integers(1, 3)), max_size=80))
        row = [t for free, taken in runs for t in [False] * free + [True] * taken]
        row = (row + [False] * columns)[:columns]
    else:  # each seat taken with one chance, from nearly empty to nearly full
        chance = draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.7, 0.9, 0.97, 1.0]))
        rnd = random.Random(draw(st.integers(0, 2**32)))
        row = [rnd.random() < chance for _ in range(columns)]
    neighbours = random.Random(draw(st.integers(0, 2**32)))
    bits = [neighbours.random() < 0.5 for _ in range(index * columns)] + row
    bits += [neighbours.random() < 0.5 for _ in range(columns)]
    raw = bytes(
        sum(1 << (7 - k) for k in range(8) if i + k < len(bits) and bits[i + k])
        for i in range(0, len(bits), 8)
    )
    if draw(st.booleans()):  # the bitmap ends before the row does: the rest is free
        raw = raw[: draw(st.integers(0, len(raw)))]
        seen = len(raw) * 8 - index * columns
        row = [taken and c < seen for c, taken in enumerate(row)]
    return index, columns, row, raw


def test_the_exhaustive_rule_in_python_matches_the_reference_lua(redis_client):
    r = redis_client
    reference = r.register_script(REFERENCE_CALL)
    rnd = random.Random(3)
    for _ in range(300):
        columns = rnd.randint(1, 40)
        row = [rnd.random() < rnd.choice([0.2, 0.5, 0.8]) for _ in range(columns)]
        r.set(
            "row",
            bytes(
                sum(1 << (7 - k) for k in range(8) if i + k < columns and row[i + k])
                for i in range(0, columns, 8)
            ),
        )
        assert reference(keys=["row"], args=[0, columns, MAX_N]) == [
            exhaustive(row, n) for n in range(1, MAX_N + 1)
        ]


def test_the_row_search_chooses_what_trying_every_start_chooses(redis_client):
    r = redis_client
    reference = r.register_script(REFERENCE_CALL)
    production = r.register_script(PRODUCTION_CALL)

    @settings(
        max_examples=3000,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(rows())
    def same(case: tuple[int, int, list[bool], bytes]) -> None:
        index, columns, row, raw = case
        r.delete("sold")
        if raw:
            r.set("sold", raw)
        args = [index, columns, MAX_N]
        expected = [exhaustive(row, n) for n in range(1, MAX_N + 1)]
        assert reference(keys=["sold"], args=args) == expected
        longest = longest_run(row)
        assert production(keys=["sold"], args=args) == [*expected, longest, longest]

    same()


# ARGV: 1 the event prefix, 2 a request id, 3 zone, 4 rows, 5 columns, 6 n. KEYS: the order
# scripts' six (unused here). Returns {row index, row label, first column} or {}.
ZONE_CALL = (
    ORDER_KEYS_LUA
    + ORDER_LIB_LUA
    + BEST_LUA
    + """
local r, label, s = best_available(tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]))
if r == nil then return {} end
return {r, label, s}
"""
)


@st.composite
def zones(draw) -> tuple[int, list[list[bool]]]:
    """(columns, rows' seats taken): mostly rows without blocks, so scans go far."""
    columns = draw(st.integers(1, 60))
    chance = draw(st.sampled_from([0.3, 0.5, 0.7, 0.9]))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    return columns, [
        [rnd.random() < chance for _ in range(columns)] for _ in range(draw(st.integers(1, 12)))
    ]


def test_the_scan_of_a_zone_chooses_the_front_row_and_block_the_rule_chooses(redis_client):
    """Every quantity, with nothing remembered, then again from row A with the rows' longest
    runs the first scans kept: the first row with the block, its best start."""
    r = redis_client
    scan = r.register_script(ZONE_CALL)
    prefix = keys.event_prefix("E")
    sold_key, left_key, _ = keys.zone_keys("E", 1)

    @settings(
        max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(zones())
    def same(case: tuple[int, list[list[bool]]]) -> None:
        columns, grid = case
        r.flushdb()
        bits = [t for row in grid for t in row]
        r.set(
            sold_key,
            bytes(
                sum(1 << (7 - k) for k in range(8) if i + k < len(bits) and bits[i + k])
                for i in range(0, len(bits), 8)
            ),
        )
        r.hset(left_key, mapping={row_label(i): row.count(False) for i, row in enumerate(grid)})
        for again in (False, True):
            for n in range(1, MAX_N + 1):
                r.hdel(keys.front_key("E", 1), n)
                expected = next(
                    (
                        [i, row_label(i), exhaustive(row, n)]
                        for i, row in enumerate(grid)
                        if exhaustive(row, n) >= 0
                    ),
                    [],
                )
                found = scan(keys=["k"] * 6, args=[prefix, "rid", 1, len(grid), columns, n])
                assert found == expected, (again, n)

    same()
