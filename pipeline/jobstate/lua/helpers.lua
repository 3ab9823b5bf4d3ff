-- Functions shared by the job-state scripts: every script is loaded as this file followed by
-- its own body (pipeline/jobstate/redis_backend.py), so these are locals of each script.
local function set_status(job, rkey, new, now)
  local old = redis.call('HGET', rkey, 'status')
  if old ~= new then
    redis.call('HINCRBY', job, 'c:' .. old, -1)
    redis.call('HINCRBY', job, 'c:' .. new, 1)
    redis.call('HSET', rkey, 'status', new)
  end
  redis.call('HSET', rkey, 'updated_at', now)
end
local function score(rkey)
  local prio = tonumber(redis.call('HGET', rkey, 'priority'))
  local seq = tonumber(redis.call('HGET', rkey, 'seq'))
  return -prio * 4294967296 + seq
end
local function need_job(job)
  if redis.call('EXISTS', job) == 0 then return redis.error_reply('NOJOB') end
  return nil
end
local function need_req(rkey)
  if redis.call('EXISTS', rkey) == 0 then return redis.error_reply('NOREQ') end
  return nil
end
local function dead(deadkey, rkey, rid, stage, message, now)
  redis.call('RPUSH', deadkey, cjson.encode({request_id = rid, render_id = redis.call('HGET', rkey, 'render_id'),
    stage = stage, message = message, attempts = tonumber(redis.call('HGET', rkey, 'attempts')),
    at = tonumber(now)}))
end
