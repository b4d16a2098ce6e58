import DeltacastCrypto
import DeltacastWire

/// The Lua scripts that make each cluster step atomic in Redis. Every key of one topic shares
/// a hash tag (`PREFIX:{TAG}:...`), so a topic's script touches one Redis Cluster slot.
///
/// Keys of a topic: `owner` (`NODE INCARNATION` of the node that polls it, written only when
/// it changes), `meta` (hash: `epoch`, `seq`, `type`), `doc` (the stored body), `log` (the
/// journal: a stream whose entry IDs are `SEQ-0`, field `e` the event's bytes), `problem`
/// (what is wrong upstream as its owner found it, `KIND HTTP MESSAGE`; absent while well).
///
/// Keys of the cluster: `PREFIX:{nodes}:members` (sorted set of `NODE INCARNATION` by Redis's
/// time of their last heartbeat) and `PREFIX:{nodes}:member:NODE` (the incarnation, expiring
/// with the lease).
///
/// Keys of each shard (one Redis has one shard, `SHARD` empty; each Redis Cluster primary has
/// its own, `SHARD` = `{TAG}:` with the tag of the lowest slot it serves, so they live on it):
/// `PREFIX:SHARDcommits` (a counter, one per entry of the next key) and
/// `PREFIX:SHARDchanges-log` (a stream with one entry per commit, release, takeover or
/// upstream problem of a topic on that shard: fields `n` the counter, `t` the tag, then `e`
/// and `s` the new epoch and seq, or `r` (a release), `o` (a takeover: the new owner) or `p`
/// (the upstream began or stopped failing)). A node reads each shard's stream once per tick,
/// so a wake-up that PUB/SUB (channel `PREFIX:SHARDchanges`, sharded PUB/SUB on a cluster)
/// lost is found within a tick, at a cost per node and shard, not per topic.
///
/// A script declares only its topic's keys (one slot) and names the shard's counter, stream
/// and channel in its arguments: they are on the same primary, in another slot, which Redis
/// allows a script without flags. It reads them before it writes anything, so a script sent
/// to a primary that no longer holds them fails whole (`non local key`) and is retried where
/// they are.
enum ClusterScript: CaseIterable {
    case heartbeat, claim, release, commit, sync, rotate, changes, problem

    /// One node's heartbeat. KEYS: members, member. ARGV: `NODE INCARNATION`, incarnation, lease
    /// ms, `join` (a node starting, or rejoining after a lapse) or `renew`, and the member a
    /// rejoin replaces ('' if none). A renewal whose key expired fails with `LAPSED`. Returns
    /// the live members: those heard from within the lease, by Redis's clock.
    static let heartbeatSource = """
        local clock = redis.call('TIME')
        local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
        if ARGV[4] ~= 'join' and redis.call('GET', KEYS[2]) ~= ARGV[2] then
          return redis.error_reply('LAPSED the membership of ' .. ARGV[1] .. ' expired')
        end
        if ARGV[5] ~= '' then redis.call('ZREM', KEYS[1], ARGV[5]) end
        redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
        redis.call('ZADD', KEYS[1], now, ARGV[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
        return redis.call('ZRANGE', KEYS[1], 0, -1)
        """

    /// Compare-and-set of a topic's owner. KEYS: owner. ARGV: the record expected ('' for
    /// none), the claimer, tag, then the shard's (``shardArguments``). Returns the record
    /// after: the claimer's when it won. A claim that took the topic from an owner is announced
    /// with the new owner (`TAG :owned N NODE INCARNATION`, and in the changes stream), so the
    /// former owner stops polling it and no node needs to read it.
    static let claimSource = shardPrologue(at: 4) + """
        local owner = redis.call('GET', KEYS[1]) or ''
        if owner ~= ARGV[1] then return owner end
        redis.call('SET', KEYS[1], ARGV[2])
        if ARGV[1] ~= '' then announce(ARGV[3], 'o', ARGV[2], ' :owned ', ' ' .. ARGV[2]) end
        return ARGV[2]
        """

    /// Gives a topic up. KEYS: owner. ARGV: the owner, tag, then the shard's. Does nothing (0) unless the caller owns it; else announces it on the channel
    /// (`TAG :released N`, N the counter) and in the changes stream, so a holder claims it.
    static let releaseSource = shardPrologue(at: 3) + """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        redis.call('DEL', KEYS[1])
        announce(ARGV[2], 'r', '1', ' :released ', '')
        return 1
        """

    /// Commits one change. KEYS: meta, log, doc, owner. ARGV: the writer's owner record ('' for
    /// a publish, which needs no owner), base epoch, base seq, event, body, content type,
    /// journal length, tag, then the shard's. The owner and the base are
    /// checked, then seq is bumped, the event appended, the body stored and the change
    /// announced, all at once. Errors: `FENCED` (the writer does not own the topic), `NOMETA`
    /// (the history vanished: start a new epoch), `CONFLICT epoch seq` (this node is behind:
    /// sync and prepare again).
    static let commitSource = shardPrologue(at: 9) + """
        if ARGV[1] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[1] then
          return redis.error_reply('FENCED ' .. ARGV[1] .. ' does not own this topic')
        end
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
        local base = tonumber(ARGV[3])
        if not epoch then
          if base ~= 0 then return redis.error_reply('NOMETA the history is gone') end
        elseif epoch ~= ARGV[2] or seq ~= base then
          return redis.error_reply('CONFLICT ' .. epoch .. ' ' .. seq)
        end
        local new = base + 1
        redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'seq', new, 'type', ARGV[6])
        redis.call('SET', KEYS[3], ARGV[5])
        if base == 0 then redis.call('DEL', KEYS[2]) end
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], new .. '-0', 'e', ARGV[4])
        announce(ARGV[8], 'e', ARGV[2], ' ' .. ARGV[2] .. ' ' .. new, '', new)
        return new
        """

    /// Reads what a node lacks. KEYS: meta, log, doc, owner, problem. ARGV: the node's seq and
    /// epoch, journal length. Returns `{epoch, seq, type, doc or nil, entries, owner, problem}`
    /// where epoch is '' when the history is gone, the entries follow the node's seq in its
    /// epoch (the whole journal for a node in another epoch, so it can serve resumes at once),
    /// the doc is left out when the node is current, owner is the owner record and problem the
    /// upstream's ('' for none).
    static let syncSource = """
        local owner = redis.call('GET', KEYS[4]) or ''
        local problem = redis.call('GET', KEYS[5]) or ''
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then return {'', 0, '', false, {}, owner, problem} end
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
        return {epoch, seq, kind, doc, entries, owner, problem}
        """

    /// Starts a new epoch when the shared seq went backwards (an old snapshot was reloaded).
    /// KEYS: meta, log. ARGV: the epoch and seq observed, the new epoch, tag, then the shard's. Does nothing (0) when the state moved meanwhile. The document
    /// stays; seq restarts at 1.
    static let rotateSource = shardPrologue(at: 5) + """
        if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'seq') ~= ARGV[2] then return 0 end
        redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'seq', 1)
        redis.call('DEL', KEYS[2])
        announce(ARGV[4], 'e', ARGV[3], ' ' .. ARGV[3] .. ' 1', '', 1)
        return 1
        """

    /// Reads the changes stream after the last entry a node saw. KEYS: commits, changes. ARGV:
    /// the last entry's ID ('' at start: only the position is returned), most entries. Returns
    /// `{counter, last ID, entries}`.
    static let changesSource = """
        local n = tonumber(redis.call('GET', KEYS[1]) or '0')
        local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
        local lastID = '0-0'
        if last[1] then lastID = last[1][1] end
        if ARGV[1] == '' then return {n, lastID, {}} end
        return {n, lastID, redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])}
        """

    /// The owner's word on its upstream. KEYS: owner, problem. ARGV: the owner record, tag, the
    /// problem ('' when well again), then the shard's. Does nothing (0)
    /// unless the caller owns the topic; else stores or clears it and announces it
    /// (`TAG :problem N`, and in the changes stream).
    static let problemSource = shardPrologue(at: 4) + """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        if ARGV[3] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[3]) end
        announce(ARGV[2], 'p', '1', ' :problem ', '')
        return 1
        """

    /// The lines every announcing script starts with. ARGV from `first` on: the shard's
    /// counter, changes stream, channel, `PUBLISH` or `SPUBLISH`, and the entries the stream
    /// keeps. They read the shard's keys before anything is written, and define
    /// `announce(tag, field, value, message, suffix[, seq])`, which counts the change, appends
    /// it to the stream and publishes `TAG MESSAGE` (`message` followed by the counter and
    /// `suffix` when no seq is given: a notice).
    static func shardPrologue(at first: Int) -> String {
        """
        local counter, changes, channel, publish, kept = ARGV[\(first)], ARGV[\(first + 1)], ARGV[\(first + 2)], ARGV[\(first + 3)], ARGV[\(first + 4)]
        redis.call('EXISTS', counter, changes)
        local function announce(tag, field, value, message, suffix, seq)
          local n = redis.call('INCR', counter)
          if seq then
            redis.call('XADD', changes, 'MAXLEN', '~', kept, '*', 'n', n, 't', tag, field, value, 's', seq)
            redis.call(publish, channel, tag .. message)
          else
            redis.call('XADD', changes, 'MAXLEN', '~', kept, '*', 'n', n, 't', tag, field, value)
            redis.call(publish, channel, tag .. message .. n .. suffix)
          end
        end

        """
    }

    var source: String {
        switch self {
        case .heartbeat: Self.heartbeatSource
        case .claim: Self.claimSource
        case .release: Self.releaseSource
        case .commit: Self.commitSource
        case .sync: Self.syncSource
        case .rotate: Self.rotateSource
        case .changes: Self.changesSource
        case .problem: Self.problemSource
        }
    }

    /// The SHA-1 Redis names the script by (`EVALSHA`).
    var sha: String { Hex.encode(SHA1.digest(Array(source.utf8))) }
}
