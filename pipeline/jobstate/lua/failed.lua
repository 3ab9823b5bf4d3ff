-- KEYS: job, pending, dead   ARGV: now, reqprefix, rid, stage, message, transient(0/1), max_attempts
local job, pending, deadkey, now, rid = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3]
local rkey = ARGV[2] .. rid
local err = need_job(job) or need_req(rkey) if err then return err end
local attempts = tonumber(redis.call('HGET', rkey, 'attempts'))
local new
redis.call('HSET', rkey, 'error_stage', ARGV[4], 'error_message', ARGV[5])
if ARGV[6] == '1' and attempts < tonumber(ARGV[7]) then
  if redis.call('HGET', job, 'cancelled') == '1' then
    new = 'cancelled'
  else
    new = 'pending'
    redis.call('ZADD', pending, score(rkey), rid)
  end
else
  new = 'failed'
  redis.call('ZREM', pending, rid)
  if redis.call('HGET', rkey, 'status') ~= 'failed' then dead(deadkey, rkey, rid, ARGV[4], ARGV[5], now) end
end
set_status(job, rkey, new, now)
redis.call('HSET', job, 'updated_at', now)
return new
