"""Lua scripts of the Redis broker: every state change is one atomic script.

Running offsets, history, de-duplication and the PUBLISH that fans an event out in ONE
script is what gives every node the same offset order: Redis executes scripts one at a
time, so the order of PUBLISHes on a collection's channel is the order of its offsets.
Each script touches only keys of one collection (hash tag `{collection}`), so a Redis
Cluster could host them.

History lives in a Stream whose entry ids are `<offset>-<accepted at, ms>`: ranges by
offset are plain XRANGEs and age trimming reads the time back from the id. Times come
from Redis' clock (TIME), shared by every node.
"""

from __future__ import annotations

_PRELUDE = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%d', n)
end

-- history entry id "<offset>-<ms>" -> offset, ms
local function entry_parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

-- drops history entries accepted before cutoff (ms); entries are in time order
local function trim_by_age(stream, cutoff)
  local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #head == 0 then return end
  local _, first_ms = entry_parts(head[1][1])
  if first_ms >= cutoff then return end
  while true do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 128)
    if #batch == 0 then return end
    for _, entry in ipairs(batch) do
      local _, ms = entry_parts(entry[1])
      if ms >= cutoff then
        redis.call('XTRIM', stream, 'MINID', entry[1])
        return
      end
    end
    local last = entry_parts(batch[#batch][1])
    redis.call('XTRIM', stream, 'MINID', int(last + 1))
  end
end

-- the Redis process this script runs in: a new one after every restart or failover
local function instance_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
end

-- the collection's epoch, created (with empty history) when missing: a Redis that lost
-- its data therefore starts a new epoch and recovering clients are told. With
-- check_instance = '1' the meta also records which Redis process wrote it: another
-- process (restart, failover, restore from a snapshot) may have lost acknowledged
-- writes, so it starts a new epoch too (offsets keep counting from the stored top).
local function ensure_meta(meta, stream, candidate, meta_ttl, check_instance)
  local epoch = redis.call('HGET', meta, 'epoch')
  local instance = ''
  if check_instance == '1' then instance = instance_id() end
  if not epoch then
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', candidate)
    epoch = candidate
    if instance ~= '' then redis.call('HSET', meta, 'instance', instance) end
  elseif instance ~= '' then
    local recorded = redis.call('HGET', meta, 'instance')
    if recorded ~= instance then
      if recorded then
        redis.call('HSET', meta, 'epoch', candidate)
        redis.call('DEL', stream)
        epoch = candidate
      end
      redis.call('HSET', meta, 'instance', instance)
    end
  end
  redis.call('PEXPIRE', meta, meta_ttl)
  return epoch
end
"""

PUBLISH = (
    _PRELUDE
    + r"""
-- KEYS: meta, history stream, [dedupe key]
-- ARGV: epoch candidate, payload, history size, history ttl ms, dedupe ttl ms,
--       meta ttl ms, channel, check instance (0/1)
-- -> {duplicate (0/1), offset, epoch}
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local sp = string.find(seen, ' ', 1, true)
    return {1, string.sub(seen, 1, sp - 1), string.sub(seen, sp + 1)}
  end
end
local epoch = ensure_meta(KEYS[1], KEYS[2], ARGV[1], ARGV[6], ARGV[8])
local offset = int(redis.call('HINCRBY', KEYS[1], 'top', 1))
local size = tonumber(ARGV[3])
if size > 0 then
  local now = now_ms()
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-' .. int(now), 'p', ARGV[2])
  trim_by_age(KEYS[2], now - tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if KEYS[3] then
  redis.call('SET', KEYS[3], offset .. ' ' .. epoch, 'PX', ARGV[5])
end
redis.call('PUBLISH', ARGV[7], 'D' .. offset .. '\n' .. epoch .. '\n' .. ARGV[2])
return {0, offset, epoch}
"""
)

HISTORY = (
    _PRELUDE
    + r"""
-- KEYS: meta, history stream
-- ARGV: epoch candidate, client epoch ('' = any), first offset wanted ('' = none),
--       limit (0 = all), history ttl ms, meta ttl ms, check instance (0/1)
-- -> {epoch, offset, oldest offset, entries}
local epoch = ensure_meta(KEYS[1], KEYS[2], ARGV[1], ARGV[6], ARGV[7])
local top = redis.call('HGET', KEYS[1], 'top') or '0'
trim_by_age(KEYS[2], now_ms() - tonumber(ARGV[5]))
local oldest = '0'
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then oldest = int(entry_parts(head[1][1])) end
local entries = {}
if ARGV[3] ~= '' and (ARGV[2] == '' or ARGV[2] == epoch) then
  local limit = tonumber(ARGV[4])
  if limit > 0 then
    entries = redis.call('XRANGE', KEYS[2], ARGV[3], '+', 'COUNT', limit)
  else
    entries = redis.call('XRANGE', KEYS[2], ARGV[3], '+')
  end
end
return {epoch, top, oldest, entries}
"""
)

PUT_SNAPSHOT = (
    _PRELUDE
    + r"""
-- KEYS: meta, history stream
-- ARGV: epoch candidate, snapshot epoch ('' = current), offset, data, meta ttl ms,
--       check instance (0/1)
-- The snapshot lives in the meta hash (snap_epoch, snap_offset, snap_data, snap_at), so
-- it lasts exactly as long as the epoch and offsets it refers to.
-- -> {outcome, current epoch, offset (stored / latest / newer snapshot's)}
local epoch = ensure_meta(KEYS[1], KEYS[2], ARGV[1], ARGV[5], ARGV[6])
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
if ARGV[2] ~= '' and ARGV[2] ~= epoch then return {'epoch_mismatch', epoch, int(top)} end
local offset = tonumber(ARGV[3])
if offset > top then return {'offset_ahead', epoch, int(top)} end
local stored = redis.call('HMGET', KEYS[1], 'snap_epoch', 'snap_offset')
if stored[1] == epoch and tonumber(stored[2]) > offset then
  return {'outdated', epoch, stored[2]}
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'snap_epoch', epoch, 'snap_offset', ARGV[3], 'snap_data', ARGV[4],
  'snap_at', int(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
return {'stored', epoch, ARGV[3]}
"""
)

ROTATE_EPOCH = r"""
-- KEYS: meta, history stream
-- ARGV: expected epoch, offset some node already delivered, new epoch
-- Redis came back from an older snapshot: offsets would be handed out twice in the
-- same epoch, so history is declared lost. -> the current epoch
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
if epoch == ARGV[1] and top < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3])
  redis.call('DEL', KEYS[2])
  return ARGV[3]
end
return epoch
"""

PRESENCE_SET = (
    _PRELUDE
    + r"""
-- KEYS: presence hash, deadlines zset
-- ARGV: peer, serialized Presence, ttl ms, channel, event message, only if absent (0/1)
-- -> 1 when stored and announced
local ttl = tonumber(ARGV[3])
if ARGV[6] == '1' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('ZADD', KEYS[2], now_ms() + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
)

PRESENCE_LEAVE = r"""
-- KEYS: presence hash, deadlines zset
-- ARGV: peer, channel, event message -> 1 when the peer was present
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

PRESENCE_REFRESH = (
    _PRELUDE
    + r"""
-- KEYS: presence hash, deadlines zset
-- ARGV: ttl ms, peers... -> the peers that have no entry (to be joined again)
local ttl = tonumber(ARGV[1])
local deadline = now_ms() + ttl
local missing = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], deadline, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
  redis.call('PEXPIRE', KEYS[2], 2 * ttl)
end
return missing
"""
)

PRESENCE_MEMBERS = (
    _PRELUDE
    + r"""
-- KEYS: presence hash, deadlines zset -> serialized Presence of unexpired peers
local peers = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. int(now_ms()), '+inf')
local out = {}
for i = 1, #peers, 512 do
  local chunk = {}
  for j = i, math.min(i + 511, #peers) do chunk[#chunk + 1] = peers[j] end
  local values = redis.call('HMGET', KEYS[1], unpack(chunk))
  for _, value in ipairs(values) do
    if value then out[#out + 1] = value end
  end
end
return out
"""
)

PRESENCE_EXPIRED = (
    _PRELUDE
    + r"""
-- KEYS: deadlines zset; ARGV: max count -> peers whose deadline has passed
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now_ms()), 'LIMIT', 0, ARGV[1])
"""
)

PRESENCE_SWEEP = (
    _PRELUDE
    + r"""
-- KEYS: presence hash, deadlines zset
-- ARGV: channel, then (peer, PeerLeave message) pairs
-- Removes the peers that are still expired and announces each removal; only the
-- script that removes an entry announces it, so a leave is broadcast once.
local now = now_ms()
local removed = 0
for i = 2, #ARGV, 2 do
  local deadline = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if deadline and tonumber(deadline) <= now then
    redis.call('ZREM', KEYS[2], ARGV[i])
    if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
      redis.call('PUBLISH', ARGV[1], ARGV[i + 1])
      removed = removed + 1
    end
  end
end
return removed
"""
)


def sharded(script: str) -> str:
    """The script for Redis Cluster: events go out with SPUBLISH (sharded pub/sub, to
    the subscribers of the collection's shard only) instead of PUBLISH (which a cluster
    broadcasts to every node). The channel carries the collection's hash tag, so the
    script stays single-slot."""
    return script.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")
