-- KEYS: job, pending, ids, dead   ARGV: now, reqprefix, max_attempts (0 = no limit)
local job, pending, ids, deadkey, now, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
local maxa = tonumber(ARGV[3])
local cancelled = redis.call('HGET', job, 'cancelled') == '1'
local n = 0
for _, rid in ipairs(redis.call('LRANGE', ids, 0, -1)) do
  local rkey = prefix .. rid
  if redis.call('HGET', rkey, 'status') == 'running' then
    local attempts = tonumber(redis.call('HGET', rkey, 'attempts'))
    if maxa > 0 and attempts >= maxa then
      local msg = 'worker lost while rendering (' .. attempts .. ' of ' .. maxa .. ' attempts used)'
      redis.call('HSET', rkey, 'error_stage', 'worker', 'error_message', msg)
      dead(deadkey, rkey, rid, 'worker', msg, now)
      set_status(job, rkey, 'failed', now)
    elseif cancelled then
      set_status(job, rkey, 'cancelled', now)
    else
      set_status(job, rkey, 'pending', now)
      redis.call('ZADD', pending, score(rkey), rid)
      n = n + 1
    end
  end
end
redis.call('HSET', job, 'updated_at', now)
return n
