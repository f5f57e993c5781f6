//! The Lua scripts that change the shared history, each one atomic step in Redis.
//!
//! Why Lua rather than `MULTI`/`EXEC`: the stream id of an event *is* the number `INCR` returns, and a
//! transaction cannot feed one queued command's result into the next. With `WATCH` it would take two round trips
//! and retries whenever two nodes publish at once; the script takes one round trip and never retries. The driver
//! sends `EVALSHA` and, when Redis answers `NOSCRIPT` (after a restart, say), loads the script and sends it again.
//!
//! Numbers stay below 2^53, where Lua's doubles are exact: at a million events a second that is 285 years.

/// Publishes one event. KEYS: sequence, epoch, the topic's stream, this publisher's marker. ARGV: the highest
/// sequence number the node has seen, a candidate epoch token, the stream's length bound, the publish's number
/// at this publisher, then the event's field names and values. Returns `{seq, epoch}`.
///
/// - The marker makes a publish idempotent: re-sent after its connection died before the reply came back, it
///   returns the number it got the first time instead of publishing twice.
/// - The sequence must be above everything the node has seen and above the stream's newest entry; if it is not,
///   or no epoch token exists, Redis lost (part of) its history: the script starts a new epoch past all of it.
/// - `p` is the topic's previous sequence number, so readers can tell a trimmed gap from a quiet topic.
pub(crate) const PUBLISH: &str = r"
local done = redis.call('GET', KEYS[4])
if done then
  local number, seq = string.match(done, '^(%d+) (%d+)$')
  if number == ARGV[4] then
    return {tonumber(seq), redis.call('GET', KEYS[2]) or ''}
  end
end
local seq = redis.call('INCR', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
local floor = tonumber(ARGV[1])
local prev = 0
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if last[1] then
  prev = tonumber(string.match(last[1][1], '^(%d+)')) or 0
end
if (not epoch) or seq <= floor or seq <= prev then
  seq = math.max(seq, floor + 1, prev + 1)
  redis.call('SET', KEYS[1], string.format('%d', seq))
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], string.format('%d-0', seq), 'p', string.format('%d', prev),
  unpack(ARGV, 5))
redis.call('SET', KEYS[4], ARGV[4] .. ' ' .. string.format('%d', seq), 'EX', 3600)
return {seq, epoch}
";

/// Checks and, if needed, repairs the history before a reader trusts it. KEYS: sequence, epoch. ARGV: the highest
/// sequence number the node has seen, a candidate epoch token. Returns `{seq, epoch}`.
pub(crate) const SYNC: &str = r"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local epoch = redis.call('GET', KEYS[2])
local floor = tonumber(ARGV[1])
if (not epoch) or seq < floor then
  if seq < floor then
    seq = floor
    redis.call('SET', KEYS[1], ARGV[1])
  end
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
end
return {seq, epoch}
";

/// Reads a script's `{seq, epoch}` reply.
pub(crate) fn seq_and_epoch(reply: &redis::Value) -> Option<(u64, String)> {
    let redis::Value::Array(items) = reply else { return None };
    let [seq, epoch] = items.as_slice() else { return None };
    let seq = match seq {
        redis::Value::Int(n) => u64::try_from(*n).ok()?,
        other => crate::entry::parse_u64(crate::entry::bytes_of(other)?)?,
    };
    let epoch = String::from_utf8(crate::entry::bytes_of(epoch)?.to_vec()).ok()?;
    Some((seq, epoch))
}
