-- KEYS: job, pending   ARGV: now, reqprefix, (rid, result, render_id or '')*
local job, pending, now, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
for i = 3, #ARGV, 3 do
  err = need_req(prefix .. ARGV[i]) if err then return err end
end
for i = 3, #ARGV, 3 do
  local rid = ARGV[i]
  local rkey = prefix .. rid
  redis.call('ZREM', pending, rid)
  set_status(job, rkey, 'done', now)
  redis.call('HSET', rkey, 'result', ARGV[i + 1])
  if ARGV[i + 2] ~= '' then redis.call('HSET', rkey, 'render_id', ARGV[i + 2]) end
  redis.call('HDEL', rkey, 'error_stage', 'error_message')
end
redis.call('HSET', job, 'updated_at', now)
return 'done'
