-- KEYS: job, pending, ids   ARGV: now, meta, reqprefix, (rid, render_id, priority, request or '')*
local job, pending, ids, now, prefix = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3]
if redis.call('EXISTS', job) == 0 then
  redis.call('HSET', job, 'created_at', now, 'updated_at', now, 'cancelled', '0', 'meta', ARGV[2], 'seq', 0,
    'c:pending', 0, 'c:running', 0, 'c:done', 0, 'c:failed', 0, 'c:cancelled', 0)
end
local cancelled = redis.call('HGET', job, 'cancelled') == '1'
local status = 'pending'
if cancelled then status = 'cancelled' end
local added = 0
for i = 4, #ARGV, 4 do
  local rid = ARGV[i]
  local rkey = prefix .. rid
  if redis.call('EXISTS', rkey) == 0 then
    local seq = redis.call('HINCRBY', job, 'seq', 1)
    redis.call('HSET', rkey, 'render_id', ARGV[i + 1], 'priority', ARGV[i + 2], 'seq', seq, 'status', status,
      'attempts', 0, 'updated_at', now)
    if ARGV[i + 3] ~= '' then redis.call('HSET', rkey, 'request', ARGV[i + 3]) end
    redis.call('RPUSH', ids, rid)
    redis.call('HINCRBY', job, 'c:' .. status, 1)
    if not cancelled then redis.call('ZADD', pending, score(rkey), rid) end
    added = added + 1
  elseif ARGV[i + 3] ~= '' then
    redis.call('HSET', rkey, 'request', ARGV[i + 3])
  end
end
if added > 0 then redis.call('HSET', job, 'updated_at', now) end
return added
