#!lua name=vgsales_predictions
--[[
The prediction stream's two scripted steps (format: ml/monitoring/stream.py).

Loaded by the Redis admin only (FUNCTION LOAD REPLACE: `scripts/stack.sh up`,
compose's redis service, `ml.monitoring.stream.load_functions`): Redis
keeps functions in memory only, and this Redis persists nothing.

A function runs under its caller's ACL, so it grants nothing: every command
below is one its caller may run directly. That is why neither step needs a
command that replaces or counts anything in a key of its own (no SET,
INCRBY, GETSET): the byte cap is read from Redis's own accounting (MEMORY
USAGE), drops are entries appended to the stream, and entries that vanished
unread are read off the consumer group's counters. What the functions add
is one round trip and atomicity.
]]

-- Entries one append may carry: bounds how long one call can hold Redis.
local MAX_ENTRIES = 1024

local function fail(message)
    return redis.error_reply('ERR vgsales_predictions: ' .. message)
end

local function count(value)
    local number = tonumber(value)
    if number == nil or number < 0 or number ~= math.floor(number) then
        return nil
    end
    return number
end

--[[
KEYS[1]: the stream. ARGV: the byte cap; the number of drop records d, then
d pairs (reason, predictions dropped); the number of fields f, then the f
field names; then per entry its number of predictions and its f values.

Drop records are appended first and whatever the cap: they are small, and
the writer sends them at most once a second. An entry is appended only if
the stream's memory (MEMORY USAGE, sampled) plus the entry's payload stays
within the cap. Everything is checked before anything is written.
Returns {predictions written, predictions refused by the cap}.
]]
local function append(keys, args)
    local stream = keys[1]
    local cap, drops = count(args[1]), count(args[2])
    if cap == nil or drops == nil then
        return fail('expected the byte cap and the number of drop records')
    end
    local i = 3
    for _ = 1, drops do
        if count(args[i + 1]) == nil then
            return fail('a drop record needs a reason and a number of predictions')
        end
        i = i + 2
    end
    local nfields = count(args[i])
    if nfields == nil or nfields == 0 then
        return fail('expected the number of fields')
    end
    local names = {}
    for j = 1, nfields do
        names[j] = args[i + j]
    end
    local first = i + nfields + 1
    local values = #args - first + 1
    if values % (nfields + 1) ~= 0 then
        return fail('each entry needs its predictions and ' .. nfields .. ' values')
    end
    if values / (nfields + 1) > MAX_ENTRIES then
        return fail('at most ' .. MAX_ENTRIES .. ' entries per call')
    end
    for e = first, #args, nfields + 1 do
        if count(args[e]) == nil then
            return fail('an entry\'s number of predictions must be a whole number')
        end
    end

    i = 3
    for _ = 1, drops do
        redis.call('XADD', stream, '*', 'reason', args[i], 'dropped', args[i + 1])
        i = i + 2
    end
    local used = redis.call('MEMORY', 'USAGE', stream) or 0
    local written, refused = 0, 0
    local fields = {}
    for e = first, #args, nfields + 1 do
        local size = 0
        for j = 1, nfields do
            local value = args[e + j]
            fields[2 * j - 1] = names[j]
            fields[2 * j] = value
            size = size + #names[j] + #value
        end
        local predictions = tonumber(args[e])
        if used + size <= cap then
            redis.call('XADD', stream, '*', unpack(fields))
            used = used + size
            written = written + predictions
        else
            refused = refused + predictions
        end
    end
    return {written, refused}
end

local function group_info(stream, group)
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local fields = {}
        for k = 1, #info, 2 do
            fields[info[k]] = info[k + 1]
        end
        if fields['name'] == group then
            return fields
        end
    end
    return nil
end

--[[
KEYS[1]: the stream. ARGV[1]: the consumer group; ARGV[2..]: ids of entries
whose rows are committed. Acknowledges and deletes them.

Then counts entries that left the stream before the group read them (an
XADD with MAXLEN or MINID trims; only the admin can do it otherwise): the
group's lag is entries added minus entries delivered, so with nothing
pending, every entry still in the stream is waiting and the rest of the lag
vanished. Those are marked counted (the group's read counter moved past
them) and their number returned, so each is reported once. Returns 0 when it
cannot tell (entries pending, or Redis cannot compute the lag).
]]
local function settle(keys, args)
    local stream, group = keys[1], args[1]
    if #args > MAX_ENTRIES + 1 then
        return fail('at most ' .. MAX_ENTRIES .. ' entries per call')
    end
    if #args > 1 then
        local ids = {unpack(args, 2)}
        redis.call('XACK', stream, group, unpack(ids))
        redis.call('XDEL', stream, unpack(ids))
    end
    local info = group_info(stream, group)
    if info == nil or info['pending'] ~= 0 or not info['lag'] or not info['entries-read'] then
        return 0
    end
    local vanished = info['lag'] - redis.call('XLEN', stream)
    if vanished <= 0 then
        return 0
    end
    redis.call('XGROUP', 'SETID', stream, group, info['last-delivered-id'],
               'ENTRIESREAD', info['entries-read'] + vanished)
    return vanished
end

redis.register_function('vgsales_predictions_append', append)
-- The drain must be able to free memory when Redis is out of it.
redis.register_function{
    function_name = 'vgsales_predictions_settle', callback = settle, flags = {'allow-oom'},
}
