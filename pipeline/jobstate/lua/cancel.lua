-- KEYS: job, pending   ARGV: now, reqprefix
local job, pending, now, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
redis.call('HSET', job, 'cancelled', '1', 'updated_at', now)
local ids = redis.call('ZRANGE', pending, 0, -1)
for _, rid in ipairs(ids) do set_status(job, prefix .. rid, 'cancelled', now) end
redis.call('DEL', pending)
return #ids
