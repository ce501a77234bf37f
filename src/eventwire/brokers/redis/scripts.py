"""Broker layer: Lua scripts that keep multi-step Redis Streams moves atomic on the server."""

from __future__ import annotations

# Move due retries back: every id whose due time (ms) has come leaves the schedule and is
# XCLAIMed by this consumer, which bumps its delivery count (-> Delivery.attempt). Entries
# trimmed away meanwhile are skipped (XCLAIM returns nothing for them and drops them from
# the PEL). KEYS: stream, schedule. ARGV: group, consumer, now_ms, count.
# Returns {{id, {field, value, ...}, deliveries}, ...}.
MOVE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  local ok, claimed = pcall(redis.call, 'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
  if ok and claimed[1] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    if p[1] then out[#out + 1] = {claimed[1][1], claimed[1][2], p[1][4]} end
  end
end
return out
"""

# Reclaim entries a dead (or stuck) member left pending for longer than min_idle. JUSTID
# first, so entries parked in the retry schedule are not touched: their delay still holds
# and their delivery count does not grow; the rest are XCLAIMed (count + 1) and returned.
# KEYS: stream, schedule. ARGV: group, consumer, min_idle_ms, start_id, count.
# Returns {next_start_id, {{id, {field, value, ...}, deliveries}, ...}}.
RECLAIM = """
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                     'COUNT', ARGV[5], 'JUSTID')
local out = {}
for _, id in ipairs(r[2]) do
  if not redis.call('ZSCORE', KEYS[2], id) then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
    if claimed[1] then
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
      if p[1] then out[#out + 1] = {claimed[1][1], claimed[1][2], p[1][4]} end
    end
  end
end
return {r[1], out}
"""

# Hand everything a leaving consumer still holds back to its group: each pending id is put
# in the schedule as due now (NX keeps the due time of ids already waiting for a delay),
# so the next poll of any member XCLAIMs it with attempt + 1. KEYS: stream, schedule.
# ARGV: group, consumer, now_ms. Returns how many ids were handed back.
RELEASE = """
local n = 0
local start = '-'
while true do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], start, '+', 500, ARGV[2])
  if #p == 0 then break end
  for _, e in ipairs(p) do
    n = n + redis.call('ZADD', KEYS[2], 'NX', ARGV[3], e[1])
  end
  if #p < 500 then break end
  start = '(' .. p[#p][1]
end
if n == 0 and #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return n
"""

# Forget consumers that hold nothing and have been idle for long: names are unique per
# subscription, so without this the group's consumer list only grows.
# KEYS: stream. ARGV: group, idle_ms.
SWEEP = """
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local n = 0
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    n = n + redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
  end
end
return n
"""

# Dead-letter one entry: XADD the dead letter, then XACK the original. A script, not
# MULTI/EXEC: EXEC runs every queued command even when one fails at run time (WRONGTYPE,
# a full disk with AOF), so the XACK could remove an entry whose dead letter was never
# written; here a failing XADD aborts the script before the XACK.
# KEYS: dead-letter stream, source stream. ARGV: group ('' = no XACK), entry id, maxlen
# (0 = none; eventwire passes 0: dead letters are never trimmed), then field, value, ...
# Returns the dead letter's id.
DEAD_LETTER = """
local cmd = {'XADD', KEYS[1]}
if ARGV[3] ~= '0' then
  cmd[#cmd + 1] = 'MAXLEN'; cmd[#cmd + 1] = '~'; cmd[#cmd + 1] = ARGV[3]
end
cmd[#cmd + 1] = '*'
for i = 4, #ARGV do cmd[#cmd + 1] = ARGV[i] end
local id = redis.call(unpack(cmd))
if ARGV[1] ~= '' then redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]) end
return id
"""

# Trim what every group has acknowledged, never more: the floor is the oldest id any group
# still needs (its oldest pending entry, else its last-delivered id, kept itself). No group
# yet: nothing has been read, so the floor is the stream's start (a new group replays it).
# Then, only with a user-set ``maxlen``: cut to that many entries; every entry this removes
# is at or above the floor, i.e. unread or unsettled, and is counted in the reply.
# KEYS: stream. ARGV: maxlen (0 = none). Returns {entries trimmed, unread entries dropped}.
TRIM = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local floor = nil
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local need = info['last-delivered-id']
  local p = redis.call('XPENDING', KEYS[1], info['name'])
  if tonumber(p[1]) > 0 and less(p[2], need) then need = p[2] end
  if floor == nil or less(need, floor) then floor = need end
end
local trimmed = 0
if floor ~= nil then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', floor)
end
local dropped = 0
local maxlen = tonumber(ARGV[1])
if maxlen > 0 then
  local excess = redis.call('XLEN', KEYS[1]) - maxlen
  if excess > 0 then
    dropped = redis.call('XTRIM', KEYS[1], 'MAXLEN', maxlen)
  end
end
return {trimmed, dropped}
"""
