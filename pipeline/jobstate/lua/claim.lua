-- KEYS: job, pending   ARGV: now, reqprefix, limit   -> {rid, attempts, request or false}*
local job, pending, now, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
if redis.call('HGET', job, 'cancelled') == '1' then return {} end
local ids = redis.call('ZRANGE', pending, 0, tonumber(ARGV[3]) - 1)
local out = {}
for _, rid in ipairs(ids) do
  local rkey = prefix .. rid
  redis.call('ZREM', pending, rid)
  set_status(job, rkey, 'running', now)
  table.insert(out, rid)
  table.insert(out, redis.call('HINCRBY', rkey, 'attempts', 1))
  table.insert(out, redis.call('HGET', rkey, 'request') or '')
end
if #ids > 0 then redis.call('HSET', job, 'updated_at', now) end
return out
