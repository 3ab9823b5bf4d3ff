-- KEYS: job, pending   ARGV: now, reqprefix, limit
local job, pending, now, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
if redis.call('HGET', job, 'cancelled') == '1' then return {} end
local ids = redis.call('ZRANGE', pending, 0, tonumber(ARGV[3]) - 1)
for _, rid in ipairs(ids) do
  local rkey = prefix .. rid
  redis.call('ZREM', pending, rid)
  set_status(job, rkey, 'running', now)
  redis.call('HINCRBY', rkey, 'attempts', 1)
end
if #ids > 0 then redis.call('HSET', job, 'updated_at', now) end
return ids
