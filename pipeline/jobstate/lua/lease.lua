-- KEYS: lease   ARGV: holder, ttl_ms   -> {holder now, ms left}
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return {current, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {ARGV[1], tonumber(ARGV[2])}
