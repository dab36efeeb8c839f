//! The Lua scripts: one per operation, each over one channel's keys only (all carry the
//! channel's hash tag, so every script is atomic and cluster-safe).
//!
//! Conventions, shared by every script through [`PRELUDE`]:
//! - `KEYS` are always the channel keys in [`super::keys::ChannelKeys::all`] order.
//! - Times are Unix microseconds, passed as decimal strings and stored as strings (never
//!   formatted by Lua, whose `tostring` keeps only 14 significant digits); sorted-set scores
//!   are exact because micros stay far below 2^53.
//! - Every script answers a table whose first element is a status: `ok`, `nf` (no such
//!   channel), `orph`, `full`, `dup`.
//! - The attempt record (`att`) is JSON: `dc` delivery count, `first`/`last` attempt times,
//!   `err` last NACK error, `holders` `|a|b|` (every connection that held a lease, for late
//!   ACKs), `cur` current holder, `reason`/`dl` dead-letter reason and time, `wh` the webhook
//!   key the message counts under.

/// Helpers prepended to every script.
pub const PRELUDE: &str = r#"
local K_STATE, K_STATS, K_MSG, K_ATT, K_Q, K_LOC, K_DELAYED, K_EXP, K_DLQ, K_WH, K_LEASE, K_RCV, K_CONN =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local GROUP = 'dispatch'
local PARK = '_requeue'

local function att_get(mid)
  local raw = redis.call('HGET', K_ATT, mid)
  if raw then return cjson.decode(raw) end
  return {dc = 0}
end
local function att_put(mid, a) redis.call('HSET', K_ATT, mid, cjson.encode(a)) end
local function held_once(a, conn)
  return a.holders ~= nil and string.find(a.holders, '|' .. conn .. '|', 1, true) ~= nil
end
local function wh_dec(k)
  if k == nil then return end
  local n = redis.call('HINCRBY', K_WH, k, -1)
  if n <= 0 then redis.call('HDEL', K_WH, k) end
end
local function drop_entry(eid)
  redis.call('XACK', K_Q, GROUP, eid)
  redis.call('XDEL', K_Q, eid)
end
local function unsettled() return redis.call('XLEN', K_Q) + redis.call('ZCARD', K_DELAYED) end
local REASON_COUNTER = {expired = 'expired', rejected = 'rejected', max_delivery_attempts = 'exhausted'}
-- The message has already left the stream / delayed set.
local function dead_letter(mid, a, reason, now_s)
  redis.call('ZADD', K_DLQ, now_s, mid)
  redis.call('HSET', K_LOC, mid, 'dead')
  redis.call('ZREM', K_EXP, mid)
  redis.call('ZREM', K_RCV, mid)
  redis.call('ZREM', K_LEASE, mid)
  redis.call('ZREM', K_DELAYED, mid)
  a.reason = reason
  a.dl = now_s
  a.cur = nil
  att_put(mid, a)
  wh_dec(a.wh)
  redis.call('HINCRBY', K_STATS, 'dead_lettered', 1)
  redis.call('HINCRBY', K_STATS, REASON_COUNTER[reason], 1)
end
local function forget(mid)
  redis.call('HDEL', K_MSG, mid)
  redis.call('HDEL', K_ATT, mid)
  redis.call('HDEL', K_LOC, mid)
end
local function entry_mid(eid)
  local f = redis.call('XRANGE', K_Q, eid, eid)
  if #f == 0 then return nil end
  return f[1][2][2]
end
local function num(k) return tonumber(redis.call('HGET', K_STATE, k)) end
"#;

/// ARGV: now, settings JSON, webhook ids (`\n`-framed), fallback owner, proposed owner,
/// configured token digest, max queue, ack timeout µs, max attempts, backoff max s,
/// DLQ retention µs.
pub const REGISTER: &str = r#"
local now, settings, ids, fallback, proposed, cfg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local created, tok_changed = 0, 0
if redis.call('HEXISTS', K_STATE, 'created_at') == 0 then
  created = 1
  redis.call('HSET', K_STATE, 'created_at', now, 'updated_at', now, 'owner', proposed,
    'status', 'active', 'tok_cur', cfg, 'tok_src', 'config', 'tok_cfg', cfg)
  redis.call('HSETNX', K_STATE, 'seq', 0)
else
  local cur = redis.call('HMGET', K_STATE, 'owner', 'status', 'settings', 'wh_ids', 'tok_cfg')
  local changed = false
  if cur[5] ~= cfg then
    tok_changed = 1
    changed = true
    redis.call('HSET', K_STATE, 'tok_cur', cfg, 'tok_src', 'config', 'tok_cfg', cfg)
    redis.call('HDEL', K_STATE, 'tok_old', 'tok_old_exp', 'rotated_at')
  end
  local owner = cur[1] or proposed
  if not string.find(ids, '\n' .. owner .. '\n', 1, true) then owner = fallback end
  if owner ~= cur[1] or cur[2] ~= 'active' or cur[3] ~= settings or cur[4] ~= ids then changed = true end
  redis.call('HSET', K_STATE, 'owner', owner, 'status', 'active')
  redis.call('HDEL', K_STATE, 'orphaned_at')
  if changed then redis.call('HSET', K_STATE, 'updated_at', now) end
end
redis.call('HSET', K_STATE, 'settings', settings, 'wh_ids', ids, 'maxq', ARGV[7], 'ack_us', ARGV[8],
  'max_att', ARGV[9], 'boff_max', ARGV[10], 'dlq_ret_us', ARGV[11])
-- An existing group is fine (BUSYGROUP).
redis.pcall('XGROUP', 'CREATE', K_Q, GROUP, '0', 'MKSTREAM')
return {'ok', created, tok_changed, redis.call('HGETALL', K_STATE)}
"#;

/// ARGV: now.
pub const ORPHAN: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
if redis.call('HGET', K_STATE, 'status') ~= 'orphaned' then
  redis.call('HSET', K_STATE, 'status', 'orphaned', 'orphaned_at', ARGV[1], 'updated_at', ARGV[1])
end
return {'ok'}
"#;

/// ARGV: mode (`always` or `orphan_due`), now, orphan retention µs.
pub const DELETE_CHANNEL: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local n = unsettled()
if ARGV[1] == 'orphan_due' then
  local st = redis.call('HMGET', K_STATE, 'status', 'orphaned_at')
  if st[1] ~= 'orphaned' or st[2] == false or n > 0 then return {'ok', -1} end
  if tonumber(st[2]) + tonumber(ARGV[3]) > tonumber(ARGV[2]) then return {'ok', -1} end
end
redis.call('DEL', K_STATE, K_STATS, K_MSG, K_ATT, K_Q, K_LOC, K_DELAYED, K_EXP, K_DLQ, K_WH, K_LEASE, K_RCV, K_CONN)
return {'ok', n}
"#;

/// ARGV: message id, JSON before the sequence, JSON after it, expires µs, received µs,
/// namespaced webhook key (or empty), plain webhook key, ctl channel, wake payload.
pub const ENQUEUE: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
if redis.call('HGET', K_STATE, 'status') == 'orphaned' then return {'orph'} end
if unsettled() >= num('maxq') then return {'full'} end
local mid = ARGV[1]
if redis.call('HEXISTS', K_MSG, mid) == 1 then return {'dup'} end
local seq = redis.call('HINCRBY', K_STATE, 'seq', 1)
redis.call('HSET', K_MSG, mid, ARGV[2] .. seq .. ARGV[3])
local eid = redis.call('XADD', K_Q, '*', 'id', mid)
redis.call('HSET', K_LOC, mid, eid)
redis.call('ZADD', K_EXP, ARGV[4], mid)
redis.call('ZADD', K_RCV, ARGV[5], mid)
local wk = ARGV[7]
if ARGV[6] ~= '' then
  local ids = redis.call('HGET', K_STATE, 'wh_ids') or ''
  if string.find(ids, '\n' .. ARGV[6] .. '\n', 1, true) or not string.find(ids, '\n' .. ARGV[7] .. '\n', 1, true) then
    wk = ARGV[6]
  end
end
redis.call('HINCRBY', K_WH, wk, 1)
att_put(mid, {dc = 0, wh = wk})
redis.call('HINCRBY', K_STATS, 'received', 1)
redis.call('PUBLISH', ARGV[8], ARGV[9])
return {'ok', seq}
"#;

/// ARGV: connection, max, now. Answers `ok` then (id, message JSON, delivery count)*.
pub const LEASE: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local conn, n, now_s = ARGV[1], tonumber(ARGV[2]), ARGV[3]
-- Byte budget (0: none): stop once the taken messages' stored size reaches it.
local budget = tonumber(ARGV[4] or '0')
local now = tonumber(now_s)
local deadline = now + num('ack_us')
local max_att = num('max_att')
local out = {'ok'}
local got = 0
local bytes = 0
local function room() return got < n and (budget == 0 or bytes < budget) end
local function take(eid, mid, parked)
  if mid == nil then
    drop_entry(eid)
    return
  end
  local exp = redis.call('ZSCORE', K_EXP, mid)
  if exp == false or redis.call('HEXISTS', K_MSG, mid) == 0 then
    drop_entry(eid)
    return
  end
  local a = att_get(mid)
  if tonumber(exp) <= now then
    drop_entry(eid)
    dead_letter(mid, a, 'expired', now_s)
    return
  end
  if (a.dc or 0) >= max_att then
    drop_entry(eid)
    dead_letter(mid, a, 'max_delivery_attempts', now_s)
    return
  end
  if parked then redis.call('XCLAIM', K_Q, GROUP, conn, 0, eid, 'JUSTID') end
  a.dc = (a.dc or 0) + 1
  if a.first == nil then a.first = now_s end
  a.last = now_s
  a.cur = conn
  if not held_once(a, conn) then a.holders = (a.holders or '|') .. conn .. '|' end
  att_put(mid, a)
  redis.call('ZADD', K_LEASE, deadline, mid)
  redis.call('HINCRBY', K_STATS, 'delivered', 1)
  local json = redis.call('HGET', K_MSG, mid)
  out[#out + 1] = mid
  out[#out + 1] = json
  out[#out + 1] = a.dc
  got = got + 1
  bytes = bytes + #json
end
-- Head first: released leases parked on the _requeue consumer, in stream order.
while room() do
  local p = redis.call('XPENDING', K_Q, GROUP, '-', '+', n - got, PARK)
  if #p == 0 then break end
  for _, e in ipairs(p) do
    if not room() then break end
    take(e[1], entry_mid(e[1]), true)
  end
end
while room() do
  -- With a byte budget, one entry at a time: an entry read is this connection's.
  local count = n - got
  if budget > 0 then count = 1 end
  local r = redis.call('XREADGROUP', 'GROUP', GROUP, conn, 'COUNT', count, 'STREAMS', K_Q, '>')
  if not r or #r[1][2] == 0 then break end
  for _, e in ipairs(r[1][2]) do
    if e[2] then take(e[1], e[2][2], false) else drop_entry(e[1]) end
  end
end
return out
"#;

/// ARGV: message id, connection. Answers 0 (not in flight), 1 (settled, late ACK) or 2
/// (settled by the current holder).
pub const ACK: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local mid, conn = ARGV[1], ARGV[2]
local loc = redis.call('HGET', K_LOC, mid)
if not loc or loc == 'dead' then return {'ok', 0} end
local a = att_get(mid)
if not held_once(a, conn) then return {'ok', 0} end
local held = 0
if loc == 'delayed' then
  redis.call('ZREM', K_DELAYED, mid)
else
  if a.cur == conn and redis.call('ZSCORE', K_LEASE, mid) then held = 1 end
  drop_entry(loc)
end
forget(mid)
redis.call('ZREM', K_EXP, mid)
redis.call('ZREM', K_RCV, mid)
redis.call('ZREM', K_LEASE, mid)
wh_dec(a.wh)
redis.call('HINCRBY', K_STATS, 'acked', 1)
return {'ok', 1 + held}
"#;

/// True when `conn` holds the current lease of the message; used by NACK and extend.
const HELD: &str = r#"
local function current_lease(mid, conn)
  local loc = redis.call('HGET', K_LOC, mid)
  if not loc or loc == 'dead' or loc == 'delayed' then return nil end
  local a = att_get(mid)
  if a.cur ~= conn or not redis.call('ZSCORE', K_LEASE, mid) then return nil end
  return loc, a
end
"#;

/// ARGV: message id, connection, retry (1/0), error, has error (1/0), now, jitter.
/// Answers `nh`, `dl` + reason, or `delayed` + due µs.
pub const NACK: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local mid, conn, now_s = ARGV[1], ARGV[2], ARGV[6]
local now = tonumber(now_s)
local loc, a = current_lease(mid, conn)
if not loc then return {'ok', 'nh'} end
drop_entry(loc)
redis.call('ZREM', K_LEASE, mid)
a.cur = nil
redis.call('HINCRBY', K_STATS, 'nacked', 1)
if ARGV[5] == '1' then a.err = ARGV[4] end
local reason = nil
local exp = redis.call('ZSCORE', K_EXP, mid)
if ARGV[3] ~= '1' then reason = 'rejected'
elseif (a.dc or 0) >= num('max_att') then reason = 'max_delivery_attempts'
elseif exp and tonumber(exp) <= now then reason = 'expired' end
if reason then
  dead_letter(mid, a, reason, now_s)
  return {'ok', 'dl', reason}
end
local maxb = num('boff_max')
local base = math.min(maxb, 2 ^ math.min((a.dc or 1) - 1, 62))
local d = math.min(maxb, base * tonumber(ARGV[7]))
local due = now + math.floor(d * 1000000)
redis.call('ZADD', K_DELAYED, due, mid)
redis.call('HSET', K_LOC, mid, 'delayed')
att_put(mid, a)
return {'ok', 'delayed', due}
"#;

/// ARGV: message id, connection, now.
pub const EXTEND: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local loc, a = current_lease(ARGV[1], ARGV[2])
if not loc then return {'ok', 0} end
redis.call('ZADD', K_LEASE, tonumber(ARGV[3]) + num('ack_us'), ARGV[1])
-- Keeps the owner, resets the entry's idle time (visible to XPENDING-based tooling).
redis.call('XCLAIM', K_Q, GROUP, ARGV[2], 0, loc, 'JUSTID')
return {'ok', 1}
"#;

/// ARGV: connection, ctl channel, wake payload. Answers `ok` then the released ids.
pub const RELEASE: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local conn = ARGV[1]
local out = {'ok'}
local p = redis.call('XPENDING', K_Q, GROUP, '-', '+', 100000, conn)
for _, e in ipairs(p) do
  redis.call('XCLAIM', K_Q, GROUP, PARK, 0, e[1], 'JUSTID')
  local mid = entry_mid(e[1])
  if mid then
    redis.call('ZREM', K_LEASE, mid)
    local a = att_get(mid)
    a.cur = nil
    att_put(mid, a)
    out[#out + 1] = mid
  end
end
redis.call('XGROUP', 'DELCONSUMER', K_Q, GROUP, conn)
if #out > 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return out
"#;

/// ARGV: now, ctl channel, wake payload. Answers `ok`, promoted, expired, DLQ removed,
/// then (connection, message id)* of expired leases.
pub const SWEEP: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local now_s = ARGV[1]
local now = tonumber(now_s)
local lost = {}
for _, mid in ipairs(redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now_s, 'LIMIT', 0, 1000)) do
  local loc = redis.call('HGET', K_LOC, mid)
  local a = att_get(mid)
  if loc and loc ~= 'dead' and loc ~= 'delayed' then
    redis.call('XCLAIM', K_Q, GROUP, PARK, 0, loc, 'JUSTID')
    lost[#lost + 1] = a.cur or ''
    lost[#lost + 1] = mid
  end
  redis.call('ZREM', K_LEASE, mid)
  a.cur = nil
  att_put(mid, a)
end
local promoted = 0
for _, mid in ipairs(redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now_s, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', K_DELAYED, mid)
  local eid = redis.call('XADD', K_Q, '*', 'id', mid)
  redis.call('HSET', K_LOC, mid, eid)
  promoted = promoted + 1
end
local expired = 0
for _, mid in ipairs(redis.call('ZRANGEBYSCORE', K_EXP, '-inf', now_s, 'LIMIT', 0, 1000)) do
  -- A leased message is not interrupted: it is dead-lettered when it needs a redelivery.
  if not redis.call('ZSCORE', K_LEASE, mid) then
    local loc = redis.call('HGET', K_LOC, mid)
    if loc == 'delayed' then redis.call('ZREM', K_DELAYED, mid)
    elseif loc and loc ~= 'dead' then drop_entry(loc) end
    dead_letter(mid, att_get(mid), 'expired', now_s)
    expired = expired + 1
  end
end
local removed = 0
local ret = num('dlq_ret_us') or 0
if ret > 0 then
  for _, mid in ipairs(redis.call('ZRANGEBYSCORE', K_DLQ, '-inf', now - ret, 'LIMIT', 0, 1000)) do
    redis.call('ZREM', K_DLQ, mid)
    forget(mid)
    redis.call('HINCRBY', K_STATS, 'discarded', 1)
    removed = removed + 1
  end
end
-- Consumers of connections that ended without a release (their replica died) stay in the
-- group once their leases are reclaimed; drop those idle for 10 minutes with nothing pending
-- (a live but quiet connection loses nothing: its next lease re-creates it).
local consumers = redis.pcall('XINFO', 'CONSUMERS', K_Q, GROUP)
if type(consumers) ~= 'table' or consumers.err then consumers = {} end
for _, c in ipairs(consumers) do
  local f = {}
  for j = 1, #c, 2 do f[c[j]] = c[j + 1] end
  if f.name ~= PARK and tonumber(f.pending) == 0 and tonumber(f.idle) > 600000 then
    redis.call('XGROUP', 'DELCONSUMER', K_Q, GROUP, f.name)
  end
end
if #lost > 0 or promoted > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
local out = {'ok', promoted, expired, removed}
for _, v in ipairs(lost) do out[#out + 1] = v end
return out
"#;

/// ARGV: message id, new message JSON, expires µs, received µs, ctl channel, wake payload.
/// Answers `ok` + `ok` | `nf` | `full`.
pub const REPLAY: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local mid = ARGV[1]
if not redis.call('ZSCORE', K_DLQ, mid) then return {'ok', 'nf'} end
if unsettled() >= num('maxq') then return {'ok', 'full'} end
redis.call('ZREM', K_DLQ, mid)
redis.call('HSET', K_MSG, mid, ARGV[2])
local old = att_get(mid)
att_put(mid, {dc = 0, wh = old.wh})
if old.wh then redis.call('HINCRBY', K_WH, old.wh, 1) end
local eid = redis.call('XADD', K_Q, '*', 'id', mid)
redis.call('HSET', K_LOC, mid, eid)
redis.call('ZADD', K_EXP, ARGV[3], mid)
redis.call('ZADD', K_RCV, ARGV[4], mid)
redis.call('HINCRBY', K_STATS, 'replayed', 1)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'ok', 'ok'}
"#;

/// ARGV: message id, or empty for all (purge). Answers `ok` + count removed.
pub const DELETE_DEAD: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local ids
if ARGV[1] == '' then
  ids = redis.call('ZRANGE', K_DLQ, 0, -1)
elseif redis.call('ZSCORE', K_DLQ, ARGV[1]) then
  ids = {ARGV[1]}
else
  return {'ok', 0}
end
for _, mid in ipairs(ids) do
  redis.call('ZREM', K_DLQ, mid)
  forget(mid)
end
if #ids > 0 then redis.call('HINCRBY', K_STATS, 'discarded', #ids) end
return {'ok', #ids}
"#;

/// ARGV: new digest, previous expiry µs, now, ctl channel, token payload.
pub const ROTATE: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local cur = redis.call('HGET', K_STATE, 'tok_cur')
redis.call('HSET', K_STATE, 'tok_old', cur, 'tok_old_exp', ARGV[2], 'tok_cur', ARGV[1],
  'tok_src', 'rotated', 'rotated_at', ARGV[3], 'updated_at', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {'ok', redis.call('HGETALL', K_STATE)}
"#;

/// ARGV: connection, max, now, stale-before µs.
pub const ADD_CONNECTION: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
redis.call('ZREMRANGEBYSCORE', K_CONN, '-inf', '(' .. ARGV[4])
if redis.call('ZSCORE', K_CONN, ARGV[1]) then
  redis.call('ZADD', K_CONN, ARGV[3], ARGV[1])
  return {'ok', 1}
end
if redis.call('ZCARD', K_CONN) >= tonumber(ARGV[2]) then return {'ok', 0} end
redis.call('ZADD', K_CONN, ARGV[3], ARGV[1])
return {'ok', 1}
"#;

/// ARGV: filter (`ready`, `in_flight`, `delayed`, `all`), limit. Read-only. Answers `ok`
/// then (id, state, holder, message JSON, attempt JSON, lease deadline, due)*; missing
/// values are empty strings.
pub const PEEK: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local filter, limit = ARGV[1], tonumber(ARGV[2])
local out = {'ok'}
local n = 0
local function add(mid, state, holder)
  if n >= limit then return end
  out[#out + 1] = mid
  out[#out + 1] = state
  out[#out + 1] = holder or ''
  out[#out + 1] = redis.call('HGET', K_MSG, mid) or ''
  out[#out + 1] = redis.call('HGET', K_ATT, mid) or ''
  out[#out + 1] = redis.call('ZSCORE', K_LEASE, mid) or ''
  out[#out + 1] = redis.call('ZSCORE', K_DELAYED, mid) or ''
  n = n + 1
end
local pend = redis.call('XPENDING', K_Q, GROUP, '-', '+', 100000)
local owner = {}
local inflight = 0
for _, e in ipairs(pend) do
  owner[e[1]] = e[2]
  if e[2] ~= PARK then inflight = inflight + 1 end
end
local entries = redis.call('XRANGE', K_Q, '-', '+', 'COUNT', limit + inflight)
if filter == 'in_flight' or filter == 'all' then
  for _, e in ipairs(pend) do
    if e[2] ~= PARK then
      local mid = entry_mid(e[1])
      if mid then add(mid, 'in_flight', e[2]) end
    end
  end
end
if filter == 'ready' or filter == 'all' then
  for _, e in ipairs(entries) do
    local o = owner[e[1]]
    if (o == nil or o == PARK) and e[2] then add(e[2][2], 'ready', nil) end
  end
end
if filter == 'delayed' or filter == 'all' then
  for _, mid in ipairs(redis.call('ZRANGE', K_DELAYED, 0, limit - 1)) do add(mid, 'delayed', nil) end
end
return out
"#;

/// Read-only. Answers `ok`, counters (flat), stream length, delayed, dead letters,
/// in flight, webhook pending (flat), oldest unsettled receive time µs (or empty).
pub const STATS: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local s = redis.call('XPENDING', K_Q, GROUP)
local inflight = s[1]
if s[4] then
  for _, c in ipairs(s[4]) do
    if c[1] == PARK then inflight = inflight - tonumber(c[2]) end
  end
end
local oldest = redis.call('ZRANGE', K_RCV, 0, 0, 'WITHSCORES')
return {'ok', redis.call('HGETALL', K_STATS), redis.call('XLEN', K_Q), redis.call('ZCARD', K_DELAYED),
  redis.call('ZCARD', K_DLQ), inflight, redis.call('HGETALL', K_WH), oldest[2] or ''}
"#;

/// ARGV: limit (0 = just one message: ARGV[2]). Read-only. Answers `ok`, total, then
/// (id, message JSON, attempt JSON)*, newest first.
pub const DEAD_LETTERS: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local ids
if ARGV[1] == '0' then
  if redis.call('ZSCORE', K_DLQ, ARGV[2]) then ids = {ARGV[2]} else ids = {} end
else
  ids = redis.call('ZREVRANGE', K_DLQ, 0, tonumber(ARGV[1]) - 1)
end
local out = {'ok', redis.call('ZCARD', K_DLQ)}
for _, mid in ipairs(ids) do
  out[#out + 1] = mid
  out[#out + 1] = redis.call('HGET', K_MSG, mid) or ''
  out[#out + 1] = redis.call('HGET', K_ATT, mid) or ''
end
return out
"#;

/// Read-only. Answers `ok` then (consumer, pending)* of live leases.
pub const LEASE_COUNTS: &str = r#"
if redis.call('EXISTS', K_STATE) == 0 then return {'nf'} end
local s = redis.call('XPENDING', K_Q, GROUP)
local out = {'ok'}
if s[4] then
  for _, c in ipairs(s[4]) do
    if c[1] ~= PARK then
      out[#out + 1] = c[1]
      out[#out + 1] = c[2]
    end
  end
end
return out
"#;

/// The data generation `P:gen` (no channel keys, no prelude): answers the stored value, or
/// stores ARGV[1] and answers it when the key is missing (first start, or Redis lost its data).
pub const GENERATION: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"#;

/// Sliding-window rate limit on one key `P:rl:<webhook key>` (no channel keys, no prelude).
/// ARGV: now µs, window µs, max, unique member. Answers {1, 0} or {0, retry µs}.
pub const RATE_LIMIT: &str = r#"
local now, win, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
if redis.call('ZCARD', KEYS[1]) >= max then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + win - now}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(win / 1000) + 1000)
return {1, 0}
"#;

/// Builds a script from the prelude (and the lease check where needed) and a body.
pub fn build(body: &str) -> redis::Script {
    let held = if body.contains("current_lease(") {
        HELD
    } else {
        ""
    };
    redis::Script::new(&format!("{PRELUDE}{held}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script touches keys only through `KEYS` (the channel's keys, one slot): the
    /// first argument of each `redis.call` is a `K_*` alias, `KEYS[…]`, or not a key at all
    /// (`PUBLISH`'s channel, a subcommand).
    #[test]
    fn scripts_reach_keys_only_through_keys() {
        let scripts = [
            REGISTER,
            ORPHAN,
            DELETE_CHANNEL,
            ENQUEUE,
            LEASE,
            ACK,
            NACK,
            EXTEND,
            RELEASE,
            SWEEP,
            REPLAY,
            DELETE_DEAD,
            ROTATE,
            ADD_CONNECTION,
            PEEK,
            STATS,
            DEAD_LETTERS,
            LEASE_COUNTS,
            GENERATION,
            RATE_LIMIT,
            PRELUDE,
            HELD,
        ];
        for script in scripts {
            for call in script.split("redis.call(").skip(1) {
                let args: Vec<&str> = call.splitn(3, ',').map(str::trim).collect();
                let first = args.get(1).copied().unwrap_or("");
                let ok = first.starts_with("K_")
                    || first.starts_with("KEYS[")
                    || matches!(args[0], "'PUBLISH'" | "'XREADGROUP'" | "'XGROUP'");
                assert!(ok, "redis.call({call:.60}…) names a key outside KEYS");
            }
        }
    }
}
