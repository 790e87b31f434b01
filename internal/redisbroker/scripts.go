package redisbroker

import "github.com/redis/go-redis/v9"

// Every script takes the time from the server (TIME), so expiry does not
// depend on the clocks of the nodes. Scripts touch only keys of one channel,
// which share the channel's hash tag and therefore one cluster slot.

// luaNow and luaTrimExpired are shared by the scripts below.
//
// Stream entries are stored with id "<offset>-0" and two fields: d (the
// encoded publication) and x (expiry in unix ms, 0 = none). Entries expire
// oldest first, so trimming stops at the first live entry.
const luaPrelude = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function trim_expired(key, now)
  while true do
    local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 16)
    if #head == 0 then return end
    for _, e in ipairs(head) do
      local f, x = e[2], 0
      for i = 1, #f, 2 do
        if f[i] == 'x' then x = tonumber(f[i + 1]) end
      end
      if x > 0 and x <= now then
        redis.call('XDEL', key, e[1])
      else
        return
      end
    end
  end
end

-- ensure_meta returns the stream's epoch, creating it (and dropping any
-- history of a forgotten epoch) when the meta hash is missing.
local function ensure_meta(stream, meta, candidate, meta_ttl)
  local epoch = redis.call('HGET', meta, 'e')
  if epoch then return epoch, false end
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', candidate, 'o', 0)
  redis.call('PEXPIRE', meta, meta_ttl)
  return candidate, true
end
`

// publishScript appends a publication and publishes it in one step, so the
// order of pub/sub messages equals the order of offsets.
//
// KEYS: 1 stream, 2 meta.
// ARGV: 1 encoded publication, 2 history size, 3 history TTL ms (0 none),
// 4 meta TTL ms, 5 pub/sub channel, 6 epoch candidate, 7 PUBLISH or
// SPUBLISH.
// Returns {offset, epoch}.
var publishScript = redis.NewScript(luaPrelude + `
local stream, meta = KEYS[1], KEYS[2]
local size, hist_ttl, meta_ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local epoch = ensure_meta(stream, meta, ARGV[6], meta_ttl)
local offset = redis.call('HINCRBY', meta, 'o', 1)
trim_expired(stream, now)
local exp = 0
if hist_ttl > 0 then exp = now + hist_ttl end
redis.call('XADD', stream, 'MAXLEN', size, offset .. '-0', 'd', ARGV[1], 'x', exp)
redis.call('PEXPIRE', meta, meta_ttl)
if hist_ttl > 0 and hist_ttl < meta_ttl then
  redis.call('PEXPIRE', stream, hist_ttl)
else
  redis.call('PEXPIRE', stream, meta_ttl)
end
redis.call(ARGV[7], ARGV[5], 'p' .. offset .. ' ' .. epoch .. ' ' .. ARGV[1])
return {offset, epoch}
`)

// historyScript reads the position and publications in one step.
//
// KEYS: 1 stream, 2 meta.
// ARGV: 1 meta TTL ms (used when creating the epoch), 2 epoch candidate,
// 3 since offset ("" for none), 4 since epoch, 5 limit (<0 none, 0 position
// only), 6 "1" for reverse.
// Returns {offset, epoch, {id1, data1, id2, data2, ...}}.
var historyScript = redis.NewScript(luaPrelude + `
local stream, meta = KEYS[1], KEYS[2]
local now = now_ms()
local epoch = ensure_meta(stream, meta, ARGV[2], tonumber(ARGV[1]))
local offset = tonumber(redis.call('HGET', meta, 'o') or '0')
local limit = tonumber(ARGV[5])
if limit == 0 then return {offset, epoch, {}} end
if ARGV[3] ~= '' and ARGV[4] ~= epoch then return {offset, epoch, {}} end
trim_expired(stream, now)
local lo = '-'
if ARGV[3] ~= '' then lo = '(' .. ARGV[3] .. '-0' end
local entries
if ARGV[6] == '1' then
  if limit > 0 then
    entries = redis.call('XREVRANGE', stream, '+', lo, 'COUNT', limit)
  else
    entries = redis.call('XREVRANGE', stream, '+', lo)
  end
else
  if limit > 0 then
    entries = redis.call('XRANGE', stream, lo, '+', 'COUNT', limit)
  else
    entries = redis.call('XRANGE', stream, lo, '+')
  end
end
local out = {}
for _, e in ipairs(entries) do
  local f, d, x = e[2], '', 0
  for i = 1, #f, 2 do
    if f[i] == 'd' then d = f[i + 1] elseif f[i] == 'x' then x = tonumber(f[i + 1]) end
  end
  if x == 0 or x > now then
    out[#out + 1] = e[1]
    out[#out + 1] = d
  end
end
return {offset, epoch, out}
`)

// addPresenceScript sets a client's entry and its expiry.
//
// KEYS: 1 presence hash, 2 expiry sorted set.
// ARGV: 1 client id, 2 encoded info, 3 ttl ms.
var addPresenceScript = redis.NewScript(luaPrelude + `
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], now_ms() + ttl, ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
`)

// presenceScript removes expired entries and returns the live ones.
//
// KEYS: 1 presence hash, 2 expiry sorted set.
// Returns HGETALL of the hash after cleanup.
var presenceScript = redis.NewScript(luaPrelude + `
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #expired, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #expired) do batch[#batch + 1] = expired[j] end
  redis.call('HDEL', KEYS[1], unpack(batch))
  redis.call('ZREM', KEYS[2], unpack(batch))
end
return redis.call('HGETALL', KEYS[1])
`)

// removePresenceScript deletes a client's entry.
//
// KEYS: 1 presence hash, 2 expiry sorted set. ARGV: 1 client id.
var removePresenceScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`)

// eventScript publishes a message from the node owning KEYS[1]'s slot.
//
// KEYS: 1 any key of the channel (not accessed). ARGV: 1 PUBLISH or
// SPUBLISH, 2 pub/sub channel, 3 message.
var eventScript = redis.NewScript(`
return redis.call(ARGV[1], ARGV[2], ARGV[3])
`)
