import DeltacastWire

/// The Lua scripts that make each cluster step atomic in Redis. Every key of one topic shares
/// a hash tag (`PREFIX:{TAG}:...`), so a script touches one Redis Cluster slot.
///
/// Keys of a topic: `lease` (the leader's node name, with a TTL), `fence` (a counter bumped on
/// every new leadership), `meta` (hash: `epoch`, `seq`, `type`), `doc` (the stored body), `log`
/// (the journal: a stream whose entry IDs are `SEQ-0`, field `e` the event's bytes).
enum ClusterScript: CaseIterable {
    case acquire, commit, sync, rotate

    /// Takes, renews or looks at the lease. KEYS: lease, fence, claim. ARGV: node, lease ms,
    /// `claim` (the node rendezvous hashing prefers: take it, or ask the holder to hand it over),
    /// `take` (take it if free) or `peek`. A holder that finds another node's claim releases the
    /// lease, so leadership moves to the preferred nodes that have the topic. Returns
    /// `{fence, holder}`: the fence token when this node holds the lease (0 otherwise) and the
    /// holder ('' when free).
    static let acquireSource = """
        local holder = redis.call('GET', KEYS[1])
        if holder == ARGV[1] then
          local claim = redis.call('GET', KEYS[3])
          if claim and claim ~= ARGV[1] and ARGV[3] ~= 'claim' then
            redis.call('DEL', KEYS[1])
            return {0, ''}
          end
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return {tonumber(redis.call('GET', KEYS[2]) or '0'), holder}
        end
        if holder then
          if ARGV[3] == 'claim' then redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2]) end
          return {0, holder}
        end
        if ARGV[3] == 'peek' then return {0, ''} end
        if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return {redis.call('INCR', KEYS[2]), ARGV[1]}
        """

    /// Commits one change. KEYS: meta, log, doc, lease, fence. ARGV: node, fence token ('' for
    /// a publish, which needs no lease), base epoch, base seq, event, body, content type,
    /// journal length, channel, tag. The fence and the base are checked, then seq is bumped,
    /// the event appended, the body stored and the change announced, all at once. Errors:
    /// `FENCED` (not the leader any more), `NOMETA` (the history vanished: start a new epoch),
    /// `CONFLICT epoch seq` (this node is behind: sync and prepare again).
    static let commitSource = """
        if ARGV[2] ~= '' then
          if redis.call('GET', KEYS[4]) ~= ARGV[1] then return redis.error_reply('FENCED the lease is not held by ' .. ARGV[1]) end
          if redis.call('GET', KEYS[5]) ~= ARGV[2] then return redis.error_reply('FENCED stale fencing token ' .. ARGV[2]) end
        end
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
        local base = tonumber(ARGV[4])
        if not epoch then
          if base ~= 0 then return redis.error_reply('NOMETA the history is gone') end
        elseif epoch ~= ARGV[3] or seq ~= base then
          return redis.error_reply('CONFLICT ' .. epoch .. ' ' .. seq)
        end
        local new = base + 1
        redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'seq', new, 'type', ARGV[7])
        redis.call('SET', KEYS[3], ARGV[6])
        if base == 0 then redis.call('DEL', KEYS[2]) end
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], new .. '-0', 'e', ARGV[5])
        redis.call('PUBLISH', ARGV[9], ARGV[10] .. ' ' .. ARGV[3] .. ' ' .. new)
        return new
        """

    /// Reads what a node lacks. KEYS: meta, log, doc. ARGV: the node's seq and epoch. Returns
    /// nil when the history is gone, else `{epoch, seq, type, doc or nil, entries}` where the
    /// entries follow the node's seq in its epoch (the whole journal for a node in another
    /// epoch, so it can serve resumes at once), and the doc is left out when the node is current.
    static let syncSource = """
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then return false end
        local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
        local kind = redis.call('HGET', KEYS[1], 'type') or 'application/json'
        local from = tonumber(ARGV[1])
        local entries = {}
        if epoch == ARGV[2] and from < seq then
          entries = redis.call('XRANGE', KEYS[2], (from + 1) .. '-0', '+', 'COUNT', seq - from)
        elseif epoch ~= ARGV[2] then
          entries = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[3])
        end
        local doc = false
        if not (epoch == ARGV[2] and from == seq) then doc = redis.call('GET', KEYS[3]) end
        return {epoch, seq, kind, doc, entries}
        """

    /// Starts a new epoch when the shared seq went backwards (an old snapshot was reloaded).
    /// KEYS: meta, log. ARGV: the epoch and seq observed, the new epoch, channel, tag. Does
    /// nothing (0) when the state moved meanwhile. The document stays; seq restarts at 1.
    static let rotateSource = """
        if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'seq') ~= ARGV[2] then return 0 end
        redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'seq', 1)
        redis.call('DEL', KEYS[2])
        redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. ARGV[3] .. ' 1')
        return 1
        """

    var source: String {
        switch self {
        case .acquire: Self.acquireSource
        case .commit: Self.commitSource
        case .sync: Self.syncSource
        case .rotate: Self.rotateSource
        }
    }

    /// The SHA-1 Redis names the script by (`EVALSHA`).
    var sha: String {
        SHA1.digest(Array(source.utf8)).map { byte in
            let hex = Array("0123456789abcdef")
            return String([hex[Int(byte >> 4)], hex[Int(byte & 15)]])
        }.joined()
    }
}
