-- KEYS: job, pending   ARGV: now, reqprefix, rid, result
local job, pending, now, rid = KEYS[1], KEYS[2], ARGV[1], ARGV[3]
local rkey = ARGV[2] .. rid
local err = need_job(job) or need_req(rkey) if err then return err end
redis.call('ZREM', pending, rid)
set_status(job, rkey, 'done', now)
redis.call('HSET', rkey, 'result', ARGV[4])
redis.call('HDEL', rkey, 'error_stage', 'error_message')
redis.call('HSET', job, 'updated_at', now)
return 'done'
