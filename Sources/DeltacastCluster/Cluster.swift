import DeltacastBase
public import DeltacastConfig
import DeltacastCrypto
public import DeltacastHub
public import DeltacastJSON
import DeltacastLoop
import DeltacastWire
public import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Cluster mode (DESIGN.md "DeltacastCluster"): many proxies, one poll per topic, one history.
///
/// - **Ownership.** Only a topic's owner polls it (``mayPoll(_:)``). Each node heartbeats once
///   per tick; a topic's owner record changes only when it is claimed or released
///   (``Ownership``), so while nothing changes a node's Redis work does not grow with its
///   topics. A dead owner is replaced within the lease plus a tick; a paused one is fenced.
/// - **History.** A change is committed by one script (owner, base seq, bump, journal,
///   document, announcement) and applied by every node from Redis, the committing one
///   included, so cursors are the same everywhere. PUB/SUB only wakes nodes up; each tick a
///   node also reads the changes stream from where it left it, so a lost message costs at most
///   a tick.
/// - **Failures.** Lost history → a new epoch (snapshots); a seq gone backwards → a new epoch;
///   Redis unreachable → subscribers get one `status` event, the node serves what it holds, and
///   the first sync after recovery brings every topic up to date.
///
/// Runs on its own event loop, and nothing it offers waits for Redis: a commit, a topic's load
/// or catch-up, a ticket's store or take each return at once and call their completion on the
/// cluster loop when Redis answered (or failed to, within the command timeout). Commits of one
/// topic run one at a time, in the order they came, so each is diffed against the state the
/// one before it made. Only ``init(settings:configuration:startTimeout:)`` waits, before the
/// server serves anything.
public final class Cluster: TopicReplication, @unchecked Sendable {
    public let settings: Configuration.Cluster
    /// The lease, milliseconds.
    public let leaseMilliseconds: Int64
    /// How often a node heartbeats and reads the changes stream, milliseconds.
    public let tickMilliseconds: Int64
    /// The credential-digest salt every node shares.
    public let salt: [UInt8]
    let loop: EventLoop
    let commands: RedisRouter
    let subscriber: RedisRouter
    /// The heartbeat and the changes streams' reads, on connections of their own: they never
    /// wait behind a burst of bulk scripts.
    let ticker: RedisRouter
    /// Journal entries kept in Redis per topic (`limits.journal_entries`).
    let journalEntries: Int
    public let metrics = ClusterMetrics()
    private weak var hub: Hub?
    /// Called on the cluster loop when this node becomes a topic's leader: poll it now.
    private var onLeadership: (@Sendable (Topic) -> Void)?

    /// Membership and owners (read by the pollers' threads through ``mayPoll(_:)``).
    private let ownership: Locked<Ownership>
    /// Topic keys by tag (what PUB/SUB messages and the changes stream name), for topics this
    /// node has seen.
    private let tags = Locked<[String: String]>([:])
    /// The live nodes as the last heartbeat saw them (the status page reads them from any thread).
    private let knownNodes = Locked<[String]>([])
    /// Each primary and its slots, as of the last sweep (the status page).
    private let shardMap = Locked<[(address: String, slots: String)]>([])
    // On the loop only:
    /// Where this node is in each shard's changes stream: the last entry's ID and counter
    /// (absent until read).
    private var changesPositions: [RedisRouter.Shard: (id: String, counter: Int)] = [:]
    /// Shards whose changes stream is being read (reads follow each other until caught up).
    private var readingChanges = Set<RedisRouter.Shard>()
    /// The hash slots of the topics this node holds (a Redis Cluster): only the shards that
    /// serve them are heard (their channels) and read (their changes streams). Recomputed at
    /// each sweep; a topic met adds its slot at once.
    private var heldSlots = Set<Int>()
    /// Channels subscribed on the subscriber's connections now.
    private var subscribedChannels = Set<String>()
    /// Numbers of the releases, takeovers and problems PUB/SUB already brought (the stream's
    /// entries for them are skipped); emptied past 100,000 (the worst case is a second read).
    private var noticesHandled = Set<Int>()
    /// Entries read from the changes stream at a time.
    static let changesPerRead = 5000
    /// Bulk scripts (syncs, claims, releases, commits) in flight at once; the rest wait here in
    /// order, so a burst (a node meeting 50,000 topics, a re-read of every topic) never passes
    /// the connection's own limit and the heartbeat is never far behind.
    static let maximumBulkInFlight = 2000
    private var bulkInFlight = 0
    private var bulkWaiting: [(@escaping () -> Void) -> Void] = []
    private var bulkStart = 0
    private var drainingBulk = false
    /// Syncs waiting for their turn, by topic key: a topic waits once, whoever asked.
    private var syncsWaiting: [String: (gapFill: Bool, completions: [() -> Void])] = [:]
    /// Whether the next heartbeat joins (at start, after a lapse): the member it replaces ('' for
    /// none); nil when it renews.
    private var joining: String? = ""
    /// Ticks since the last sweep of topics this node no longer holds.
    private var ticksSinceSweep = 0
    /// Commands this node sent at the last sweep, and when (the rate on the status page).
    private var sentAtSweep = (commands: 0, at: Int64(0))
    /// Commands per second this node sent to Redis over the last second or so (a script is one).
    private let commandRate = Atomic<Int>(0)
    /// Changes stream entries kept in Redis (`MAXLEN ~`, about 100 bytes each): a node that fell
    /// behind by more re-reads every topic. A burst of 50,000 topics met at once writes about
    /// as many entries (first commits, takeovers).
    static let changesKept = 100_000
    /// Commits waiting, by topic key, on the loop only: the first is in flight.
    private var commitQueues: [String: [PendingCommit]] = [:]
    /// Commits that may wait for one topic (the one in flight included); past it a publish is
    /// refused with ``Topic/UpdateError/clusterUnavailable(_:)``. A poll never queues more
    /// than one behind the one in flight: a newer body replaces the one waiting.
    public static let maximumQueuedCommits = 64

    /// One body to commit, and who waits for its outcome.
    private struct PendingCommit {
        var parsed: JSONDocument?
        var body: [UInt8]
        var contentType: String
        var completions: [@Sendable (Result<Topic.UpdateOutcome, Topic.UpdateError>) -> Void]
    }
    private let available = Atomic<Bool>(false)
    private var ticking = false
    /// A heartbeat is in flight (one at a time, however slow Redis is).
    private var heartbeating = false

    /// Why cluster mode could not start.
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The clock of leases, heartbeats and claims (the hub's coarse monotonic clock unless a
    /// test gives another); ``Ownership`` decides on the times it is given.
    private let clock: any HubClock

    /// Connects to Redis and reads (or sets) the shared salt; waits at most `startTimeout`
    /// milliseconds for Redis. Blocking: call before the server starts.
    public init(settings: Configuration.Cluster, configuration: Configuration, startTimeout: Int64 = 10_000,
                clock: any HubClock = SystemHubClock()) throws(StartError) {
        self.clock = clock
        self.settings = settings
        self.leaseMilliseconds = settings.effectiveLease(endpoints: configuration.endpoints).wholeMilliseconds
        let shortest = configuration.endpoints.filter { $0.source == .poll }.map { $0.interval.wholeMilliseconds }.min() ?? leaseMilliseconds
        self.tickMilliseconds = max(100, min(leaseMilliseconds / 6, shortest / 2))
        self.journalEntries = configuration.limits.journalEntries
        self.ownership = Locked(Ownership(node: settings.node, incarnation: Topic.randomEpoch(), leaseMilliseconds: leaseMilliseconds))
        do { loop = try EventLoop() } catch { throw StartError(description: "cannot create the cluster loop: \(error)") }
        // The slot map (a Redis Cluster) and the salt: the first node's random one; SET NX
        // makes every later node take it. Read before the loop starts, on this thread, by
        // start-up exchanges of their own.
        let start = try StartupExchange.join(settings.redis, saltKey: settings.keyPrefix + ":salt", startTimeout: startTimeout)
        salt = start.salt
        commands = RedisRouter(loop: loop, address: settings.redis, name: "deltacast-\(settings.node)", map: start.map, metrics: metrics)
        subscriber = RedisRouter(loop: loop, address: settings.redis, name: "deltacast-\(settings.node)-sub", map: start.map, metrics: metrics)
        ticker = RedisRouter(loop: loop, address: settings.redis, name: "deltacast-\(settings.node)-tick", map: start.map, metrics: metrics)
        do { try loop.start(name: "deltacast-cluster") } catch { throw StartError(description: "cannot start the cluster loop: \(error)") }
        commands.start()
        available.store(true, ordering: .relaxed)
    }

    /// Starts following `hub`'s topics: subscribes, then heartbeats and reads the changes stream
    /// every tick. `onLeadership` hears of each topic this node comes to own (poll it now).
    public func attach(hub: Hub, onLeadership: @escaping @Sendable (Topic) -> Void) {
        loop.execute { [self] in
            self.hub = hub
            self.onLeadership = onLeadership
            let ranges = commands.slotRanges
            shardMap.withLock { $0 = ranges }
            commands.onDown = { [weak self] reason in self?.unavailable(reason) }
            commands.onReady = { [weak self] in self?.recovered() }
            subscriber.onPush = { [weak self] value in self?.pushed(value) }
            subscriber.onShardReady = { [weak self] connection, shard in
                guard let self else { return }
                // A new connection has no subscription: subscribe again where this node holds topics.
                let channel = self.channel(shard)
                self.subscribedChannels.remove(channel)
                guard !self.subscriber.isCluster || self.subscriber.shards(serving: self.heldSlots).contains(shard) else { return }
                self.subscribedChannels.insert(channel)
                connection.send([self.subscriber.isCluster ? "SSUBSCRIBE" : "SUBSCRIBE", channel], nil)
                // Messages sent while we were away are lost: compare the shard's topics now.
                self.syncAll(in: shard)
            }
            ticker.onShardsChanged = { [weak self] in
                guard let self else { return }
                let live = Set(self.ticker.shards)
                for shard in self.changesPositions.keys where !live.contains(shard) { self.changesPositions[shard] = nil }
            }
            // In subscribe mode a connection cannot read the slot map: the subscriber takes
            // the commands connections' map.
            subscriber.follow(commands)
            subscriber.start()
            ticker.start()
            ticking = true
            tick()
        }
    }

    /// Stops the loop and both connections (shutdown).
    public func stop() {
        loop.execute { [self] in ticking = false }
        commands.stop()
        subscriber.stop()
        ticker.stop()
        loop.stop()
        loop.join()
    }

    /// How long a Redis command may take before it fails, milliseconds.
    public var commandTimeout: Int64 { commands.limits.commandTimeout }

    /// Whether Redis is a Redis Cluster.
    public var isRedisCluster: Bool { settings.redis.isCluster }

    /// Whether Redis answers now.
    public var isAvailable: Bool { available.load(ordering: .relaxed) }

    // MARK: Keys

    /// The hash tag of a topic: 16 hex digits of its key's SHA-1 (a key may hold any byte).
    static func tag(_ key: String) -> String { Hex.encode(SHA1.digest(Array(key.utf8)).prefix(8)) }

    struct Keys { let meta, log, doc, owner, problem, tag: String }

    func keys(_ topic: Topic) -> Keys { keys(tag: Self.tag(topic.key)) }

    func keys(tag: String) -> Keys {
        let base = "\(settings.keyPrefix):{\(tag)}:"
        return Keys(meta: base + "meta", log: base + "log", doc: base + "doc", owner: base + "owner", problem: base + "problem", tag: tag)
    }

    /// The cluster-wide keys: membership.
    var members: String { settings.keyPrefix + ":{nodes}:members" }
    var memberKey: String { settings.keyPrefix + ":{nodes}:member:" + settings.node }

    /// A shard's keys: `PREFIX:commits`, `PREFIX:changes-log` and the channel `PREFIX:changes`
    /// on one Redis; `PREFIX:{TAG}:...` on a Redis Cluster primary.
    func shardKey(_ shard: RedisRouter.Shard, _ name: String) -> String {
        settings.keyPrefix + ":" + (shard.tag.map { "{\($0)}:" } ?? "") + name
    }

    func channel(_ shard: RedisRouter.Shard) -> String { shardKey(shard, "changes") }

    /// The arguments every announcing script ends with (``ClusterScript/shardPrologue(at:)``).
    func shardArguments(_ shard: RedisRouter.Shard) -> [[UInt8]] {
        [shardKey(shard, "commits"), shardKey(shard, "changes-log"), channel(shard), shard.tag == nil ? "PUBLISH" : "SPUBLISH",
         String(Self.changesKept)].map { Array($0.utf8) }
    }

    // MARK: TopicReplication

    public func mayPoll(_ topic: Topic) -> Bool {
        let now = clock.milliseconds
        return ownership.withLock { $0.mayPoll(topic.key, now: now) }
    }

    /// A topic appeared on this node: remember its tag, start loading its state and journal
    /// (its readers wait in the topic meanwhile), and try to lead it.
    public func topicCreated(_ topic: Topic) {
        let tag = Self.tag(topic.key)
        tags.withLock { $0[tag] = topic.key }
        if commands.isCluster {
            let slot = HashSlot.of("{\(tag)}")
            loop.execute { [self] in
                if heldSlots.insert(slot).inserted { subscribeWhereHeld() }
            }
        }
        if topic.endpoint.source == .poll { ownership.withLock { $0.hold(topic.key, tag: tag) } }
        topic.catchUp(since: nil) {}
    }

    public func catchUp(_ topic: Topic, completion: @escaping @Sendable () -> Void) {
        loop.execute { [self] in sync(topic, completion: completion) }
    }

    public func update(_ topic: Topic, parsed: JSONDocument?, body: [UInt8], contentType: String,
                       completion: @escaping @Sendable (Result<Topic.UpdateOutcome, Topic.UpdateError>) -> Void) {
        let commit = PendingCommit(parsed: parsed, body: body, contentType: contentType, completions: [completion])
        let polled = topic.endpoint.source == .poll
        loop.execute { [self] in
            var queue = commitQueues[topic.key] ?? []
            if polled && queue.count >= 2 {
                // A newer poll supersedes the one waiting: only the latest state is worth a commit.
                let superseded = queue[queue.count - 1].completions
                queue[queue.count - 1] = commit
                commitQueues[topic.key] = queue
                let cursor = topic.cursor ?? Cursor(epoch: topic.epoch, seq: 0)
                for waiting in superseded { waiting(.success(.unchanged(cursor))) }
                return
            }
            guard queue.count < Self.maximumQueuedCommits else {
                return completion(.failure(.clusterUnavailable("\(Self.maximumQueuedCommits) commits of this topic already wait for Redis")))
            }
            queue.append(commit)
            commitQueues[topic.key] = queue
            if queue.count == 1 { attemptCommit(topic, commit, newEpoch: nil, attempt: 1) }
        }
    }

    /// Diffs `commit` against the topic's state now and runs the commit script (on the loop).
    /// A conflict (this node was behind) syncs and tries again, a vanished history starts a
    /// new epoch; four attempts in all.
    private func attemptCommit(_ topic: Topic, _ commit: PendingCommit, newEpoch: String?, attempt: Int) {
        let current = { topic.cursor ?? Cursor(epoch: topic.epoch, seq: 0) }
        guard attempt <= 4 else {
            return finishCommit(topic, .failure(.clusterUnavailable("the shared history kept moving: four commits in a row conflicted")))
        }
        guard let prepared = topic.prepare(parsed: commit.parsed, body: commit.body, contentType: commit.contentType, newEpoch: newEpoch) else {
            topic.upstreamRecovered()
            return finishCommit(topic, .success(.unchanged(current())))
        }
        var writer = ""
        if topic.endpoint.source == .poll {
            let now = clock.milliseconds
            guard let identity = ownership.withLock({ $0.mayPoll(topic.key, now: now) ? $0.identity : nil }) else {
                return finishCommit(topic, .failure(.clusterUnavailable("this node no longer owns the topic: another polls it")))
            }
            writer = identity
        }
        let keys = keys(topic)
        let started = MonotonicClock.nanoseconds()
        bulk { [self] done in
            eval(.commit, keys: [keys.meta, keys.log, keys.doc, keys.owner],
                 arguments: [Array(writer.utf8), Array(prepared.base.epoch.utf8),
                             Array(String(prepared.base.seq).utf8), prepared.event, prepared.body, Array(prepared.contentType.utf8),
                             Array(String(journalEntries).utf8), Array(keys.tag.utf8)], shard: true) { [self] reply in
                done()
                metrics.scriptSeconds.observe(Double(MonotonicClock.nanoseconds() - started) / 1e9)
                switch reply {
                case .success(.integer):
                    metrics.commits.add(1, ordering: .relaxed)
                    if newEpoch != nil { metrics.epochRotations.add(1, ordering: .relaxed) }
                    sync(topic) { [self] in
                        topic.upstreamRecovered()
                        finishCommit(topic, .success(.changed(prepared.cursor)))
                    }
                case .success(.error(let message)) where message.hasPrefix("FENCED"):
                    metrics.fenced.add(1, ordering: .relaxed)
                    // Not the owner any more: read who is, and stop polling. The body was not
                    // committed (its poll's validators must not make the next poll a 304).
                    sync(topic) { [self] in finishCommit(topic, .failure(.clusterUnavailable("fenced: another node owns the topic now"))) }
                case .success(.error(let message)) where message.hasPrefix("NOMETA"):
                    attemptCommit(topic, commit, newEpoch: Topic.randomEpoch(), attempt: attempt + 1)
                case .success(.error(let message)) where message.hasPrefix("CONFLICT"):
                    metrics.conflicts.add(1, ordering: .relaxed)
                    sync(topic) { [self] in attemptCommit(topic, commit, newEpoch: nil, attempt: attempt + 1) }
                case .success(let other):
                    finishCommit(topic, .failure(.clusterUnavailable("Redis answered the commit with \(other)")))
                case .failure(let failure):
                    finishCommit(topic, .failure(.clusterUnavailable(failure.description)))
                }
            }
        }
    }

    /// The commit in flight for `topic` ended: its waiters hear `result`, and the next starts.
    private func finishCommit(_ topic: Topic, _ result: Result<Topic.UpdateOutcome, Topic.UpdateError>) {
        guard var queue = commitQueues[topic.key], !queue.isEmpty else { return }
        let done = queue.removeFirst()
        commitQueues[topic.key] = queue.isEmpty ? nil : queue
        for completion in done.completions { completion(result) }
        if let next = queue.first { attemptCommit(topic, next, newEpoch: nil, attempt: 1) }
    }

    // MARK: Scripts

    /// Runs `script` by its SHA-1 on the primary of `keys[0]`, loading it when Redis does not
    /// know it (`NOSCRIPT`: after a restart or `SCRIPT FLUSH`). With `shard`, the arguments end
    /// with that primary's shard keys, named where the command is sent.
    func eval(_ script: ClusterScript, keys: [String], arguments: [[UInt8]], shard: Bool = false, on router: RedisRouter? = nil,
              _ callback: @escaping RedisConnection.Callback) {
        let router = router ?? commands
        let build = { [self] (verb: String, body: String) in
            { (target: RedisRouter.Shard) -> [[UInt8]] in
                [Array(verb.utf8), Array(body.utf8), Array(String(keys.count).utf8)] + keys.map { Array($0.utf8) } + arguments
                    + (shard ? self.shardArguments(target) : [])
            }
        }
        router.send(key: keys[0], build("EVALSHA", script.sha)) { [self] result in
            if case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") {
                metrics.scriptLoads.add(1, ordering: .relaxed)
                router.send(key: keys[0], build("EVAL", script.source), callback)
            } else {
                callback(result)
            }
        }
    }

    // MARK: Sync

    /// Brings `topic` up to the shared state (on the loop); `completion`, if any, runs once it
    /// was applied, or at once when Redis did not answer.
    func sync(_ topic: Topic, gapFill: Bool = false, completion: (() -> Void)? = nil) {
        if var waiting = syncsWaiting[topic.key] {
            waiting.gapFill = waiting.gapFill || gapFill
            if let completion { waiting.completions.append(completion) }
            syncsWaiting[topic.key] = waiting
            return
        }
        syncsWaiting[topic.key] = (gapFill, completion.map { [$0] } ?? [])
        bulk { [self] done in
            // The cursor is read when the sync is sent, not when it was asked for.
            let (gapFill, completions) = syncsWaiting.removeValue(forKey: topic.key) ?? (false, [])
            let finish = { for completion in completions { completion() } }
            let keys = keys(topic)
            eval(.sync, keys: [keys.meta, keys.log, keys.doc, keys.owner, keys.problem], arguments: syncArguments(topic.cursor, topic)) { [weak self] result in
                done()
                guard let self, case .success(let reply) = result else { return finish() }
                self.apply(reply, to: topic, keys: keys, gapFill: gapFill, completion: finish)
            }
        }
    }

    /// Runs `work` once fewer than ``maximumBulkInFlight`` bulk scripts are in flight; `work`
    /// calls its argument when its reply came (at once, or later).
    private func bulk(_ work: @escaping (@escaping () -> Void) -> Void) {
        bulkWaiting.append(work)
        drainBulk()
    }

    private func drainBulk() {
        guard !drainingBulk else { return }
        drainingBulk = true
        while bulkInFlight < Self.maximumBulkInFlight && bulkStart < bulkWaiting.count {
            let work = bulkWaiting[bulkStart]
            bulkStart += 1
            bulkInFlight += 1
            work { [weak self] in
                guard let self else { return }
                self.bulkInFlight -= 1
                self.drainBulk()
            }
        }
        if bulkStart == bulkWaiting.count {
            bulkWaiting.removeAll(keepingCapacity: bulkWaiting.count < 4096)
            bulkStart = 0
        } else if bulkStart > 4096 && bulkStart * 2 > bulkWaiting.count {
            bulkWaiting.removeFirst(bulkStart)
            bulkStart = 0
        }
        drainingBulk = false
    }

    private func syncArguments(_ cursor: Cursor?, _ topic: Topic) -> [[UInt8]] {
        [Array(String(cursor?.seq ?? 0).utf8), Array((cursor?.epoch ?? topic.epoch).utf8), Array(String(journalEntries).utf8)]
    }

    /// Applies a sync script's reply (on the loop), then calls `completion`. A reply that is
    /// not the script's applies nothing; an empty epoch (the history is gone) only the owner.
    private func apply(_ reply: RESPValue, to topic: Topic, keys: Keys, gapFill: Bool, completion: (() -> Void)?) {
        guard let fields = reply.elements, fields.count == 7, let epoch = fields[0].text, let seq = fields[1].integer,
              let owner = fields[5].text, let problem = fields[6].text else { completion?(); return }
        learned(owner: owner, of: topic)
        // The owner polls, so its own word is the latest; every other node takes the owner's.
        if topic.endpoint.source == .poll && !mayPoll(topic) { topic.replicateProblem(Self.problem(decoding: problem)) }
        guard !epoch.isEmpty else { completion?(); return }
        let contentType = fields[2].text ?? "application/json"
        var body: [UInt8]?
        if case .bulk(let bytes?) = fields[3] { body = bytes }
        var entries: [(seq: Int, event: [UInt8])] = []
        for entry in fields[4].elements ?? [] {
            guard let parts = entry.elements, parts.count == 2, let id = parts[0].text, let entrySeq = Int(id.prefix { $0 != "-" }),
                  let values = parts[1].elements, values.count == 2, case .bulk(let event?) = values[1] else { continue }
            entries.append((entrySeq, event))
        }
        switch topic.replicate(epoch: epoch, seq: Int(seq), body: body, contentType: contentType, entries: entries) {
        case .applied:
            if gapFill { metrics.gapFills.add(1, ordering: .relaxed) }
        case .reset:
            metrics.resets.add(1, ordering: .relaxed)
        case .current:
            break
        case .wentBackwards:
            // An old snapshot of Redis came back: its seqs were already used in this epoch.
            let newEpoch = Topic.randomEpoch()
            eval(.rotate, keys: [keys.meta, keys.log],
                 arguments: [Array(epoch.utf8), Array(String(seq).utf8), Array(newEpoch.utf8), Array(keys.tag.utf8)], shard: true) { [weak self] result in
                guard let self else { return }
                if case .success(.integer(1)) = result { self.metrics.epochRotations.add(1, ordering: .relaxed) }
                self.sync(topic, completion: completion)
            }
            return
        }
        completion?()
    }

    /// A PUB/SUB message: `TAG EPOCH SEQ` (a commit), or `TAG :released N`, `TAG :owned N`,
    /// `TAG :problem N` (N: its number in the changes stream, which then need not act again).
    private func pushed(_ value: RESPValue) {
        if let parts = value.elements, parts.first?.text == "sunsubscribe", parts.count >= 2, let channel = parts[1].text {
            // Its slot moved: the map is read again and the new home subscribed.
            subscribedChannels.remove(channel)
            return
        }
        guard let parts = value.elements, parts.count == 3, parts[0].text == "message" || parts[0].text == "smessage", let text = parts[2].text else { return }
        let fields = text.split(separator: " ")
        guard fields.count == 3 || fields.count == 5 else { return }
        let tag = String(fields[0])
        switch fields[1] {
        case ":released", ":owned", ":problem":
            guard let number = Int(fields[2]) else { return }
            if noticesHandled.count >= 100_000 { noticesHandled.removeAll() }
            noticesHandled.insert(number)
            switch fields[1] {
            case ":released": released(tag: tag)
            case ":owned" where fields.count == 5: ownerTook(tag: tag, owner: fields[3] + " " + fields[4])
            default: ownerChanged(tag: tag)
            }
        default:
            guard let seq = Int(fields[2]) else { return }
            announced(tag: tag, epoch: String(fields[1]), seq: seq)
        }
    }

    /// A commit of `tag`'s topic made `epoch`/`seq`: sync unless this node is there already.
    private func announced(tag: String, epoch: String, seq: Int) {
        guard let key = tags.withLock({ $0[tag] }), let topic = hub?.existingTopic(key: key) else { return }
        let cursor = topic.cursor
        // The committing node (and any node a wake-up already brought there) has this state: no
        // round trip for nothing.
        if let cursor, cursor.epoch == epoch, cursor.seq >= seq { return }
        let gap = cursor.map { $0.epoch == epoch && seq > $0.seq + 1 } ?? false
        sync(topic, gapFill: gap)
    }

    /// Another node gave up `tag`'s topic: claim it if this node holds it.
    private func released(tag: String) {
        ownership.withLock { $0.released(tag: tag) }
        claimDue()
    }

    /// Another node took `tag`'s topic over (this node may have lost it), or its owner found the
    /// upstream failing or well again: read the topic.
    private func ownerChanged(tag: String) {
        guard let key = tags.withLock({ $0[tag] }), let topic = hub?.existingTopic(key: key) else { return }
        sync(topic)
    }

    /// `owner` took `tag`'s topic over: record it (this node may have lost the topic).
    private func ownerTook(tag: String, owner: String) {
        guard let key = tags.withLock({ $0[tag] }), let topic = hub?.existingTopic(key: key) else { return }
        learned(owner: owner, of: topic)
    }

    private func syncAll() {
        for topic in hub?.allTopics ?? [] { sync(topic) }
    }

    /// Syncs the topics whose keys live on `shard` (every topic on one Redis).
    private func syncAll(in shard: RedisRouter.Shard) {
        guard commands.isCluster else { return syncAll() }
        for topic in hub?.allTopics ?? [] where commands.shard(forKey: "{\(Self.tag(topic.key))}") == shard { sync(topic) }
    }

    // MARK: Ownership

    /// The owner record of `topic` as Redis returned it; a topic this node just came to own is
    /// polled at once.
    private func learned(owner: String, of topic: Topic) {
        guard topic.endpoint.source == .poll else { return }
        if ownership.withLock({ $0.learned(owner: owner, of: topic.key) }) {
            metrics.leaseAcquisitions.add(1, ordering: .relaxed)
            onLeadership?(topic)
        }
    }

    /// Sends the claims `Ownership` finds due now.
    private func claimDue() {
        let now = clock.milliseconds
        let (claims, identity) = ownership.withLock { ($0.tick(now: now), $0.identity) }
        for case .claim(let key, let tag, let expected) in claims {
            bulk { [self] done in
                eval(.claim, keys: [keys(tag: tag).owner],
                     arguments: [Array(expected.utf8), Array(identity.utf8), Array(tag.utf8)], shard: true) { [weak self] result in
                    done()
                    guard let self else { return }
                    guard case .success(let reply) = result, let owner = reply.text else {
                        return self.ownership.withLock { $0.claimFailed(key) }
                    }
                    if let topic = self.hub?.existingTopic(key: key) {
                        self.learned(owner: owner, of: topic)
                    } else {
                        _ = self.ownership.withLock { $0.learned(owner: owner, of: key) }
                    }
                }
            }
        }
    }

    /// Gives up `key`'s topic (no longer held here), if this node owns it.
    private func release(tag: String) {
        let identity = ownership.withLock { $0.identity }
        bulk { [self] done in
            eval(.release, keys: [keys(tag: tag).owner], arguments: [Array(identity.utf8), Array(tag.utf8)], shard: true) { _ in done() }
        }
    }

    public func upstreamChanged(_ topic: Topic, problem: UpstreamProblem?) {
        let text = problem.map(Self.encode) ?? ""
        loop.execute { [self] in
            let identity = ownership.withLock { $0.identity }
            let keys = keys(topic)
            eval(.problem, keys: [keys.owner, keys.problem], arguments: [Array(identity.utf8), Array(keys.tag.utf8), Array(text.utf8)], shard: true) { _ in }
        }
    }

    /// An upstream problem as Redis stores it: `KIND HTTP MESSAGE` (HTTP `-` when none).
    static func encode(_ problem: UpstreamProblem) -> String {
        let kind = switch problem.kind {
        case .status: "status"
        case .timeout: "timeout"
        case .transport: "transport"
        case .invalidBody: "invalid_body"
        case .forbidden: "forbidden"
        }
        return "\(kind) \(problem.http.map(String.init) ?? "-") \(problem.message)"
    }

    /// The problem `text` stores (nil for '' or anything else that is not one).
    static func problem(decoding text: String) -> UpstreamProblem? {
        let parts = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        let kind: UpstreamProblem.Kind
        switch parts[0] {
        case "status": kind = .status
        case "timeout": kind = .timeout
        case "transport": kind = .transport
        case "invalid_body": kind = .invalidBody
        case "forbidden": kind = .forbidden
        default: return nil
        }
        return UpstreamProblem(kind: kind, http: Int(parts[1]), message: String(parts[2]))
    }


    // MARK: Ticks

    private func tick() {
        guard ticking else { return }
        loop.schedule(afterMilliseconds: tickMilliseconds) { [weak self] in self?.tick() }
        // Each step goes ahead whatever else is down: on a Redis Cluster, the primary of the
        // membership keys may be up while another is failing over.
        guard hub != nil else { return }
        if !heartbeating { heartbeat() }
        let reading = ticker.isCluster ? ticker.shards(serving: heldSlots) : Set(ticker.shards)
        for shard in changesPositions.keys where !reading.contains(shard) { changesPositions[shard] = nil }
        for shard in reading where !readingChanges.contains(shard) { readChanges(shard) }
        // A subscriber connection that stopped answering is reopened by its own timeout.
        subscriber.sendToEach(["PING"])
        claimDue()
        ticksSinceSweep += 1
        if ticksSinceSweep * Int(tickMilliseconds) >= 1000 {
            ticksSinceSweep = 0
            sweep()
        }
    }

    /// One heartbeat: membership renewed (or, after a lapse, a new incarnation), the live set read.
    private func heartbeat() {
        let sent = clock.milliseconds
        let (identity, incarnation) = ownership.withLock { ($0.identity, $0.incarnation) }
        let replacing = joining
        heartbeating = true
        eval(.heartbeat, keys: [members, memberKey],
             arguments: [Array(identity.utf8), Array(incarnation.utf8), Array(String(leaseMilliseconds).utf8),
                         Array((replacing == nil ? "renew" : "join").utf8), Array((replacing ?? "").utf8)], on: ticker) { [weak self] result in
            guard let self else { return }
            self.heartbeating = false
            switch result {
            case .success(.error(let message)) where message.hasPrefix("LAPSED"):
                // Paused or cut off past the lease: what this incarnation owned is void.
                let old = self.ownership.withLock { ownership -> String in
                    let old = ownership.identity
                    ownership.lapsed(fresh: Topic.randomEpoch())
                    return old
                }
                self.metrics.lapses.add(1, ordering: .relaxed)
                self.joining = old
            case .success(let reply):
                guard let names = reply.elements?.compactMap(\.text) else { return }
                self.joining = nil
                let live = self.ownership.withLock { ownership in
                    ownership.heartbeat(sentAt: sent, members: names)
                    return ownership.liveNodes
                }
                self.knownNodes.withLock { $0 = live }
            case .failure:
                break
            }
        }
    }

    /// Reads `shard`'s changes stream after this node's position: commits, releases, takeovers
    /// and problems that PUB/SUB may have lost. Reads follow each other until the node caught
    /// up. A counter that went back (Redis lost its data: a restart, a failover to a replica
    /// that lagged) or entries trimmed before they were read make the node re-read every topic
    /// of the shard.
    private func readChanges(_ shard: RedisRouter.Shard) {
        readingChanges.insert(shard)
        let after = changesPositions[shard]?.id ?? ""
        eval(.changes, keys: [shardKey(shard, "commits"), shardKey(shard, "changes-log")],
             arguments: [Array(after.utf8), Array(String(Self.changesPerRead).utf8)], on: ticker) { [weak self] result in
            guard let self else { return }
            self.readingChanges.remove(shard)
            guard case .success(let reply) = result, let fields = reply.elements, fields.count == 3,
                  let counter = fields[0].integer, let lastID = fields[1].text else { return }
            guard let position = self.changesPositions[shard] else {
                // From here on the stream says what changed; what changed before is read now,
                // for every topic of the shard this node already met.
                self.changesPositions[shard] = (lastID, Int(counter))
                self.syncAll(in: shard)
                return
            }
            let entries = fields[2].elements ?? []
            defer { if entries.count >= Self.changesPerRead && self.ticker.isReady { self.readChanges(shard) } }
            var seen = position.counter
            var id = position.id
            var lost = Int(counter) < position.counter
            for entry in entries {
                guard let parts = entry.elements, parts.count == 2, let entryID = parts[0].text, let values = parts[1].elements else { continue }
                var map: [String: String] = [:]
                var index = 0
                while index + 1 < values.count {
                    if let name = values[index].text, let value = values[index + 1].text { map[name] = value }
                    index += 2
                }
                guard let n = map["n"].flatMap(Int.init), let tag = map["t"] else { continue }
                if n > seen + 1 { lost = true }
                seen = max(seen, n)
                id = entryID
                if map["e"] == nil, noticesHandled.remove(n) != nil { continue }
                if map["r"] != nil {
                    self.released(tag: tag)
                } else if let owner = map["o"], owner.contains(" ") {
                    self.ownerTook(tag: tag, owner: owner)
                } else if map["o"] != nil || map["p"] != nil {
                    self.ownerChanged(tag: tag)
                } else if let epoch = map["e"], let seq = map["s"].flatMap(Int.init) {
                    self.announced(tag: tag, epoch: epoch, seq: seq)
                }
            }
            if seen < Int(counter) && entries.isEmpty { lost = true }
            if lost {
                self.metrics.changesResyncs.add(1, ordering: .relaxed)
                self.changesPositions[shard] = (lastID, Int(counter))
                self.syncAll(in: shard)
            } else {
                self.changesPositions[shard] = (id, seen)
            }
        }
    }

    /// Forgets the topics this node no longer holds (evicted, or ended by a reload), releasing
    /// those it owned. Local work, once a second.
    private func sweep() {
        let now = clock.milliseconds
        let sent = commands.sent + subscriber.sent + ticker.sent
        if sentAtSweep.at > 0, now > sentAtSweep.at {
            commandRate.store(Int(Int64(sent - sentAtSweep.commands) * 1000 / (now - sentAtSweep.at)), ordering: .relaxed)
        }
        sentAtSweep = (sent, now)
        let ranges = commands.slotRanges
        shardMap.withLock { $0 = ranges }
        guard let hub else { return }
        let topics = hub.allTopics
        if commands.isCluster {
            heldSlots = Set(topics.map { HashSlot.of("{\(Self.tag($0.key))}") })
            subscribeWhereHeld()
        }
        let known = Set(topics.map(\.key))
        let gone = ownership.withLock { $0.heldKeys.filter { !known.contains($0) } }
        for key in gone {
            if case .release(_, let tag)? = ownership.withLock({ $0.drop(key) }) { release(tag: tag) }
        }
        tags.withLock { tags in for (tag, key) in tags where !known.contains(key) { tags[tag] = nil } }
    }

    /// Subscribes to the channel of each shard that serves a topic this node holds (a Redis
    /// Cluster), where not yet subscribed. Subscriptions stay until their connection closes or
    /// Redis ends them (a slot moved): at most one per primary.
    private func subscribeWhereHeld() {
        for shard in subscriber.shards(serving: heldSlots) {
            let channel = channel(shard)
            guard !subscribedChannels.contains(channel) else { continue }
            subscribedChannels.insert(channel)
            subscriber.send(key: channel, [Array("SSUBSCRIBE".utf8), Array(channel.utf8)]) { [weak self] result in
                guard let self else { return }
                if case .success(let reply) = result, reply.elements?.first?.text == "ssubscribe" {
                    self.syncAll(in: shard)
                } else {
                    self.subscribedChannels.remove(channel)   // tried again at the next sweep
                }
            }
        }
    }

    private func unavailable(_ reason: String) {
        guard available.exchange(false, ordering: .relaxed) else { return }
        metrics.redisDown.add(1, ordering: .relaxed)
        ownership.withLock { $0.suspend() }
        for topic in hub?.allTopics ?? [] { topic.setClusterAvailable(false) }
        onUnavailable?(reason)
    }

    private func recovered() {
        guard !available.exchange(true, ordering: .relaxed) else { return }
        for topic in hub?.allTopics ?? [] {
            topic.setClusterAvailable(true)
            sync(topic)
        }
    }

    /// Hears when Redis becomes unreachable (the server logs it).
    public var onUnavailable: (@Sendable (String) -> Void)?

    // MARK: Tickets

    /// Stores a single-use ticket for `milliseconds` (`SET NX PX`); `completion` hears whether
    /// Redis did (on the cluster loop).
    public func storeTicket(_ ticket: String, _ value: [UInt8], milliseconds: Int64, completion: @escaping @Sendable (Bool) -> Void) {
        let key = settings.keyPrefix + ":ticket:" + ticket
        let command = [Array("SET".utf8), Array(key.utf8), value, Array("PX".utf8), Array(String(max(1, milliseconds)).utf8), Array("NX".utf8)]
        loop.execute { [commands] in
            commands.send(key: key, command) { reply in
                if case .success(.simple("OK")) = reply { return completion(true) }
                completion(false)
            }
        }
    }

    /// Takes a ticket (`GETDEL`: the first node to ask gets it, every later one nothing);
    /// `completion` gets its value, or nil (on the cluster loop).
    public func takeTicket(_ ticket: String, completion: @escaping @Sendable ([UInt8]?) -> Void) {
        let key = settings.keyPrefix + ":ticket:" + ticket
        let command = [Array("GETDEL".utf8), Array(key.utf8)]
        loop.execute { [commands] in
            commands.send(key: key, command) { reply in
                if case .success(.bulk(let bytes?)) = reply { return completion(bytes) }
                completion(nil)
            }
        }
    }

    // MARK: Status

    /// This node's view for the status page and `deltacast top`.
    public struct Status: Sendable {
        /// This node's name.
        public var node: String
        /// Whether Redis answers now.
        public var redis: Bool
        /// The live nodes, by name.
        public var nodes: [String]
        /// The owner of each topic this node has, when known.
        public var leaders: [(topic: String, node: String)]
        /// Topics this node owns (polls) now.
        public var owned: Int
        /// Commands per second this node sends to Redis (a script is one).
        public var commandsPerSecond: Int
        /// Where the keys live: each Redis and the hash slots it serves.
        public var shards: [(address: String, slots: String)]
    }

    /// This node's view for the status page and `deltacast top`: the live nodes, who owns each
    /// topic this node has, what it owns, its Redis traffic, and the shard map.
    public func status() -> Status {
        let nodes = knownNodes.withLock { $0 }
        let topics = hub?.allTopics ?? []
        let leaders: [(topic: String, node: String)] = ownership.withLock { ownership in
            topics.compactMap { topic in ownership.ownerNode(of: topic.key).map { (topic: topic.name, node: $0) } }
        }
        return Status(node: settings.node, redis: isAvailable, nodes: nodes.sorted(), leaders: leaders.sorted { $0.topic < $1.topic },
                      owned: leasesHeld, commandsPerSecond: commandRate.load(ordering: .relaxed),
                      shards: shardMap.withLock { $0 })
    }

    public var liveNodeCount: Int { max(1, knownNodes.withLock { $0.count }) }

    /// Topics this node owns (polls) now.
    public var leasesHeld: Int {
        let now = clock.milliseconds
        return ownership.withLock { $0.owned(now: now) }
    }
}

/// Counters for `/metrics`.
public final class ClusterMetrics: Sendable {
    public let commits = Atomic<Int>(0)
    public let conflicts = Atomic<Int>(0)
    public let fenced = Atomic<Int>(0)
    public let gapFills = Atomic<Int>(0)
    public let resets = Atomic<Int>(0)
    public let epochRotations = Atomic<Int>(0)
    public let leaseAcquisitions = Atomic<Int>(0)
    public let redisDown = Atomic<Int>(0)
    /// Heartbeats that found this node's membership expired (it was paused or cut off past the
    /// lease): a new incarnation began.
    public let lapses = Atomic<Int>(0)
    /// Times the changes stream showed this node had missed more than it could read (Redis lost
    /// its data, or entries were trimmed first): it re-read every topic.
    public let changesResyncs = Atomic<Int>(0)
    /// Scripts sent whole because Redis did not know their SHA-1 (`NOSCRIPT`: a new or
    /// restarted Redis, or `SCRIPT FLUSH`); a few per Redis start.
    public let scriptLoads = Atomic<Int>(0)
    /// Redis Cluster `MOVED` answers followed (a slot's primary changed).
    public let redisMoved = Atomic<Int>(0)
    /// Redis Cluster `ASK` answers followed (a slot migrating).
    public let redisAsked = Atomic<Int>(0)
    /// Commands retried after `TRYAGAIN`, `CLUSTERDOWN`, a key no longer local or a primary
    /// not connected.
    public let redisRetried = Atomic<Int>(0)
    /// Slot maps read (`CLUSTER SLOTS`).
    public let slotMapReads = Atomic<Int>(0)
    /// Commit script round trips, seconds.
    public let scriptSeconds = Histogram(bounds: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1])
}

