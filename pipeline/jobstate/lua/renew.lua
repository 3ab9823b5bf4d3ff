-- KEYS: lease   ARGV: holder, ttl_ms   -> 1 renewed, 0 not the holder
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
