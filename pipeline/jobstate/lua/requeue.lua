-- KEYS: job, pending, ids, dead   ARGV: now, reqprefix, include_cancelled(0/1)
local job, pending, ids, deadkey, now, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
local inc = ARGV[3] == '1'
if inc then redis.call('HSET', job, 'cancelled', '0') end
local n = 0
for _, rid in ipairs(redis.call('LRANGE', ids, 0, -1)) do
  local rkey = prefix .. rid
  local st = redis.call('HGET', rkey, 'status')
  if st == 'failed' or (inc and st == 'cancelled') then
    local raw = redis.call('HGET', rkey, 'history')
    local history = {}
    if raw then history = cjson.decode(raw) end
    local entry = {status = st, attempts = tonumber(redis.call('HGET', rkey, 'attempts')), at = tonumber(now)}
    entry['stage'] = redis.call('HGET', rkey, 'error_stage') or nil
    entry['message'] = redis.call('HGET', rkey, 'error_message') or nil
    table.insert(history, entry)
    redis.call('HSET', rkey, 'history', cjson.encode(history))
    set_status(job, rkey, 'pending', now)
    redis.call('HSET', rkey, 'attempts', 0)
    redis.call('ZADD', pending, score(rkey), rid)
    n = n + 1
  end
end
redis.call('DEL', deadkey)
redis.call('HSET', job, 'updated_at', now)
return n
