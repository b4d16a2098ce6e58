import Dispatch
public import DeltacastConfig
public import DeltacastHub
public import DeltacastJSON
public import DeltacastLoop
import DeltacastWire
public import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Cluster mode (DESIGN.md "DeltacastCluster"): many proxies, one poll per topic, one history.
///
/// - **Leadership.** Each polled topic has a lease in Redis; only its holder polls
///   (``mayPoll(_:)``). Every node that has the topic renews or peeks at the lease each tick;
///   the node that rendezvous hashing prefers takes a free lease at once, others after seeing
///   it free for a whole tick, so leadership spreads and a dead leader is replaced within the
///   lease plus a tick. Each new leadership bumps a fencing counter: a commit carries the token
///   and is refused once another node took over.
/// - **History.** A change is committed by one script (fence, base seq, bump, journal, document,
///   publish) and applied by every node from Redis, the committing one included, so cursors are
///   the same everywhere. PUB/SUB only wakes nodes up; each tick also compares seqs, so a lost
///   message costs at most a tick.
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
    /// How often leases are renewed and seqs compared, milliseconds.
    public let tickMilliseconds: Int64
    /// The credential-digest salt every node shares.
    public let salt: [UInt8]
    let loop: EventLoop
    let commands: RedisConnection
    let subscriber: RedisConnection
    let channel: String
    /// Journal entries kept in Redis per topic (`limits.journal_entries`).
    let journalEntries: Int
    public let metrics = ClusterMetrics()
    private weak var hub: Hub?
    /// Called on the cluster loop when this node becomes a topic's leader: poll it now.
    private var onLeadership: (@Sendable (Topic) -> Void)?

    /// Leases this node holds, by topic key (read by the pollers' threads).
    private let leases = Locked<[String: Lease]>([:])
    struct Lease { var fence: Int64; var until: Int64 }
    /// Topic keys by tag (what PUB/SUB messages name), for topics this node has seen.
    private let tags = Locked<[String: String]>([:])
    // On the loop only:
    private var freeStreak: [String: Int] = [:]
    private var liveNodes: [String] = []
    /// Lease holders seen at the last tick, by topic key (the status page).
    private let holders = Locked<[String: String]>([:])
    /// The live nodes as the last tick saw them (the status page reads them from any thread).
    private let knownNodes = Locked<[String]>([])
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

    /// Why cluster mode could not start.
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Connects to Redis and reads (or sets) the shared salt; waits at most `startTimeout`
    /// milliseconds for Redis. Blocking: call before the server starts.
    public init(settings: Configuration.Cluster, configuration: Configuration, startTimeout: Int64 = 10_000) throws(StartError) {
        self.settings = settings
        self.leaseMilliseconds = settings.effectiveLease(endpoints: configuration.endpoints).wholeMilliseconds
        let shortest = configuration.endpoints.filter { $0.source == .poll }.map { $0.interval.wholeMilliseconds }.min() ?? leaseMilliseconds
        self.tickMilliseconds = max(100, min(leaseMilliseconds / 6, shortest / 2))
        self.channel = settings.keyPrefix + ":changes"
        self.journalEntries = configuration.limits.journalEntries
        do { loop = try EventLoop() } catch { throw StartError(description: "cannot create the cluster loop: \(error)") }
        commands = RedisConnection(loop: loop, address: settings.redis, name: "deltacast-\(settings.node)")
        subscriber = RedisConnection(loop: loop, address: settings.redis, name: "deltacast-\(settings.node)-sub")
        do { try loop.start(name: "deltacast-cluster") } catch { throw StartError(description: "cannot start the cluster loop: \(error)") }
        commands.start()
        // The salt: the first node's random one; SET NX makes every later node take it.
        let proposal = Base64.encode((0..<18).map { _ in UInt8.random(in: 0...255) })
        let deadline = MonotonicClock.milliseconds() + startTimeout
        var lastError = "no answer"
        var shared: [UInt8]?
        while shared == nil && MonotonicClock.milliseconds() < deadline {
            _ = commands.call(["SET", settings.keyPrefix + ":salt", proposal, "NX"])
            switch commands.call(["GET", settings.keyPrefix + ":salt"]) {
            case .success(.bulk(let bytes?)): shared = bytes
            case .success(let other): lastError = "unexpected reply \(other)"
            case .failure(let failure): lastError = failure.description; usleepMilliseconds(200)
            }
        }
        guard let shared else {
            commands.stop()
            loop.stop()
            loop.join()
            throw StartError(description: "cannot reach Redis at \(settings.redis) within \(startTimeout / 1000) s: \(lastError)")
        }
        salt = shared
        available.store(true, ordering: .relaxed)
    }

    /// Starts following `hub`'s topics: subscribes, then renews leases and compares seqs every
    /// tick. `onLeadership` hears of each leadership this node takes (poll the topic now).
    public func attach(hub: Hub, onLeadership: @escaping @Sendable (Topic) -> Void) {
        loop.execute { [self] in
            self.hub = hub
            self.onLeadership = onLeadership
            commands.onDown = { [weak self] reason in self?.unavailable(reason) }
            commands.onReady = { [weak self] in self?.recovered() }
            subscriber.onPush = { [weak self] value in self?.pushed(value) }
            subscriber.onReady = { [weak self] in
                guard let self else { return }
                self.subscriber.send(["SUBSCRIBE", self.channel], nil)
                // Messages sent while we were away are lost: compare every topic now.
                self.syncAll()
            }
            subscriber.start()
            ticking = true
            tick()
        }
    }

    /// Stops the loop and both connections (shutdown).
    public func stop() {
        loop.execute { [self] in ticking = false }
        commands.stop()
        subscriber.stop()
        loop.stop()
        loop.join()
    }

    /// How long a Redis command may take before it fails, milliseconds.
    public var commandTimeout: Int64 { commands.limits.commandTimeout }

    /// Whether Redis answers now.
    public var isAvailable: Bool { available.load(ordering: .relaxed) }

    // MARK: Keys

    /// The hash tag of a topic: 16 hex digits of its key's SHA-1 (a key may hold any byte).
    static func tag(_ key: String) -> String {
        SHA1.digest(Array(key.utf8)).prefix(8).map { byte in
            let hex = Array("0123456789abcdef")
            return String([hex[Int(byte >> 4)], hex[Int(byte & 15)]])
        }.joined()
    }

    struct Keys { let meta, log, doc, lease, fence, claim, tag: String }

    func keys(_ topic: Topic) -> Keys {
        let tag = Self.tag(topic.key)
        let base = "\(settings.keyPrefix):{\(tag)}:"
        return Keys(meta: base + "meta", log: base + "log", doc: base + "doc", lease: base + "lease", fence: base + "fence", claim: base + "claim", tag: tag)
    }

    // MARK: TopicReplication

    public func mayPoll(_ topic: Topic) -> Bool {
        let now = MonotonicClock.milliseconds()
        return leases.withLock { $0[topic.key].map { $0.until > now } ?? false }
    }

    /// A topic appeared on this node: remember its tag, start loading its state and journal
    /// (its readers wait in the topic meanwhile), and try to lead it.
    public func topicCreated(_ topic: Topic) {
        tags.withLock { $0[keys(topic).tag] = topic.key }
        topic.catchUp(since: nil) {}
        if topic.endpoint.source == .poll { loop.execute { [self] in lease(topic) } }
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
        var fence = ""
        if topic.endpoint.source == .poll {
            guard let held = leases.withLock({ $0[topic.key] }), held.until > MonotonicClock.milliseconds() else {
                return finishCommit(topic, .success(.unchanged(current())))
            }
            fence = String(held.fence)
        }
        let keys = keys(topic)
        let started = MonotonicClock.nanoseconds()
        eval(.commit, keys: [keys.meta, keys.log, keys.doc, keys.lease, keys.fence],
             arguments: [Array(settings.node.utf8), Array(fence.utf8), Array(prepared.base.epoch.utf8),
                         Array(String(prepared.base.seq).utf8), prepared.event, prepared.body, Array(prepared.contentType.utf8),
                         Array(String(journalEntries).utf8), Array(channel.utf8), Array(keys.tag.utf8)]) { [self] reply in
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
                _ = leases.withLock { $0.removeValue(forKey: topic.key) }
                finishCommit(topic, .success(.unchanged(current())))
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

    /// The commit in flight for `topic` ended: its waiters hear `result`, and the next starts.
    private func finishCommit(_ topic: Topic, _ result: Result<Topic.UpdateOutcome, Topic.UpdateError>) {
        guard var queue = commitQueues[topic.key], !queue.isEmpty else { return }
        let done = queue.removeFirst()
        commitQueues[topic.key] = queue.isEmpty ? nil : queue
        for completion in done.completions { completion(result) }
        if let next = queue.first { attemptCommit(topic, next, newEpoch: nil, attempt: 1) }
    }

    // MARK: Scripts

    /// Runs `script` by its SHA-1, loading it when Redis does not know it (`NOSCRIPT`: after a
    /// restart or `SCRIPT FLUSH`).
    func eval(_ script: ClusterScript, keys: [String], arguments: [[UInt8]], _ callback: @escaping RedisConnection.Callback) {
        let tail = [Array(String(keys.count).utf8)] + keys.map { Array($0.utf8) } + arguments
        commands.send([Array("EVALSHA".utf8), Array(script.sha.utf8)] + tail) { [commands, self] result in
            if case .success(.error(let message)) = result, message.hasPrefix("NOSCRIPT") {
                self.metrics.scriptLoads.add(1, ordering: .relaxed)
                commands.send([Array("EVAL".utf8), Array(script.source.utf8)] + tail, callback)
            } else {
                callback(result)
            }
        }
    }

    // MARK: Sync

    /// Brings `topic` up to the shared state (on the loop); `completion`, if any, runs once it
    /// was applied, or at once when Redis did not answer.
    func sync(_ topic: Topic, gapFill: Bool = false, completion: (() -> Void)? = nil) {
        let keys = keys(topic)
        let cursor = topic.cursor
        eval(.sync, keys: [keys.meta, keys.log, keys.doc], arguments: syncArguments(cursor, topic)) { [weak self] result in
            guard let self, case .success(let reply) = result else { completion?(); return }
            self.apply(reply, to: topic, keys: keys, gapFill: gapFill, completion: completion)
        }
    }

    private func syncArguments(_ cursor: Cursor?, _ topic: Topic) -> [[UInt8]] {
        [Array(String(cursor?.seq ?? 0).utf8), Array((cursor?.epoch ?? topic.epoch).utf8), Array(String(journalEntries).utf8)]
    }

    /// Applies a sync script's reply (on the loop), then calls `completion`. A reply that is
    /// not the script's (nil: the history is gone) applies nothing.
    private func apply(_ reply: RESPValue, to topic: Topic, keys: Keys, gapFill: Bool, completion: (() -> Void)?) {
        guard let fields = reply.elements, fields.count == 5, let epoch = fields[0].text, let seq = fields[1].integer else { completion?(); return }
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
                 arguments: [Array(epoch.utf8), Array(String(seq).utf8), Array(newEpoch.utf8), Array(channel.utf8), Array(keys.tag.utf8)]) { [weak self] result in
                guard let self else { return }
                if case .success(.integer(1)) = result { self.metrics.epochRotations.add(1, ordering: .relaxed) }
                self.sync(topic, completion: completion)
            }
            return
        }
        completion?()
    }

    /// A PUB/SUB message: `TAG EPOCH SEQ`.
    private func pushed(_ value: RESPValue) {
        guard let parts = value.elements, parts.count == 3, parts[0].text == "message", let text = parts[2].text else { return }
        let fields = text.split(separator: " ")
        guard fields.count == 3, let seq = Int(fields[2]) else { return }
        guard let key = tags.withLock({ $0[String(fields[0])] }), let topic = hub?.existingTopic(key: key) else { return }
        let cursor = topic.cursor
        // The committing node (and any node a tick already brought there) has this state: no
        // round trip for nothing.
        if let cursor, cursor.epoch == String(fields[1]), cursor.seq >= seq { return }
        let gap = cursor.map { $0.epoch == String(fields[1]) && seq > $0.seq + 1 } ?? false
        sync(topic, gapFill: gap)
    }

    private func syncAll() {
        for topic in hub?.allTopics ?? [] { sync(topic) }
    }

    // MARK: Leases

    /// Renews, takes or peeks at `topic`'s lease (on the loop).
    private func lease(_ topic: Topic) {
        let keys = keys(topic)
        let preferred = preferredNode(keys.tag) == settings.node
        let mode = preferred ? "claim" : freeStreak[topic.key, default: 0] >= 1 || leases.withLock({ $0[topic.key] != nil }) ? "take" : "peek"
        let sent = MonotonicClock.milliseconds()
        eval(.acquire, keys: [keys.lease, keys.fence, keys.claim],
             arguments: [Array(settings.node.utf8), Array(String(leaseMilliseconds).utf8), Array(mode.utf8)]) { [weak self] result in
            guard let self, case .success(let reply) = result, let fields = reply.elements, fields.count == 2,
                  let fence = fields[0].integer, let holder = fields[1].text else { return }
            self.holders.withLock { $0[topic.key] = holder }
            self.freeStreak[topic.key] = holder.isEmpty ? self.freeStreak[topic.key, default: 0] + 1 : 0
            if fence > 0 {
                // Valid locally until a margin before Redis expires it (clocks run at the same rate).
                let until = sent + self.leaseMilliseconds - max(100, self.leaseMilliseconds / 5)
                let isNew = self.leases.withLock { leases -> Bool in
                    let isNew = leases[topic.key]?.fence != fence
                    leases[topic.key] = Lease(fence: fence, until: until)
                    return isNew
                }
                if isNew {
                    self.metrics.leaseAcquisitions.add(1, ordering: .relaxed)
                    self.onLeadership?(topic)
                }
            } else {
                _ = self.leases.withLock { $0.removeValue(forKey: topic.key) }
            }
        }
    }

    /// The node rendezvous hashing picks for `tag` among the live nodes.
    private func preferredNode(_ tag: String) -> String {
        let nodes = liveNodes.isEmpty ? [settings.node] : liveNodes
        return nodes.max { Self.weight($0, tag) < Self.weight($1, tag) } ?? settings.node
    }

    private static func weight(_ node: String, _ tag: String) -> UInt64 {
        // FNV-1a over node and tag.
        var hash: UInt64 = 0xcbf29ce484222325
        for byte in Array(node.utf8) + [0] + Array(tag.utf8) { hash = (hash ^ UInt64(byte)) &* 0x100000001b3 }
        return hash
    }

    // MARK: Ticks

    private func tick() {
        guard ticking else { return }
        loop.schedule(afterMilliseconds: tickMilliseconds) { [weak self] in self?.tick() }
        guard commands.isReady, let hub else { return }
        let now = WallClock.milliseconds()
        commands.send(["ZADD", settings.keyPrefix + ":nodes", String(now), settings.node], nil)
        commands.send(["ZREMRANGEBYSCORE", settings.keyPrefix + ":nodes", "-inf", String(now - 3 * leaseMilliseconds)], nil)
        commands.send(["ZRANGE", settings.keyPrefix + ":nodes", "0", "-1"]) { [weak self] result in
            guard let self, case .success(let reply) = result, let names = reply.elements?.compactMap(\.text) else { return }
            self.liveNodes = names
            self.knownNodes.withLock { $0 = names }
        }
        // A subscriber connection that stopped answering is reopened by its own timeout.
        subscriber.send(["PING"], nil)
        let topics = hub.allTopics
        var known = Set<String>()
        for topic in topics {
            known.insert(topic.key)
            if topic.endpoint.source == .poll { lease(topic) }
            sync(topic, gapFill: true)
        }
        leases.withLock { leases in for key in leases.keys where !known.contains(key) { leases[key] = nil } }
        holders.withLock { holders in for key in holders.keys where !known.contains(key) { holders[key] = nil } }
        for key in freeStreak.keys where !known.contains(key) { freeStreak[key] = nil }
        tags.withLock { tags in for (tag, key) in tags where !known.contains(key) { tags[tag] = nil } }
    }

    private func unavailable(_ reason: String) {
        guard available.exchange(false, ordering: .relaxed) else { return }
        metrics.redisDown.add(1, ordering: .relaxed)
        leases.withLock { $0.removeAll() }
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
        let command = [Array("SET".utf8), Array((settings.keyPrefix + ":ticket:" + ticket).utf8), value,
                       Array("PX".utf8), Array(String(max(1, milliseconds)).utf8), Array("NX".utf8)]
        loop.execute { [commands] in
            commands.send(command) { reply in
                if case .success(.simple("OK")) = reply { return completion(true) }
                completion(false)
            }
        }
    }

    /// Takes a ticket (`GETDEL`: the first node to ask gets it, every later one nothing);
    /// `completion` gets its value, or nil (on the cluster loop).
    public func takeTicket(_ ticket: String, completion: @escaping @Sendable ([UInt8]?) -> Void) {
        let command = ["GETDEL", settings.keyPrefix + ":ticket:" + ticket]
        loop.execute { [commands] in
            commands.send(command) { reply in
                if case .success(.bulk(let bytes?)) = reply { return completion(bytes) }
                completion(nil)
            }
        }
    }

    // MARK: Status

    /// This node's view for the status page and `deltacast top`: the live nodes, and who leads
    /// each topic this node has.
    public func status() -> (node: String, redis: Bool, nodes: [String], leaders: [(topic: String, node: String)]) {
        let nodes = knownNodes.withLock { $0 }
        let names = Dictionary((hub?.allTopics ?? []).map { ($0.key, $0.name) }, uniquingKeysWith: { first, _ in first })
        let leaders: [(topic: String, node: String)] = holders.withLock { $0.compactMap { key, holder in holder.isEmpty ? nil : names[key].map { (topic: $0, node: holder) } } }
        return (settings.node, isAvailable, nodes.sorted(), leaders.sorted { $0.topic < $1.topic })
    }

    /// Leases this node holds now.
    public var leasesHeld: Int {
        let now = MonotonicClock.milliseconds()
        return leases.withLock { $0.values.filter { $0.until > now }.count }
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
    /// Scripts sent whole because Redis did not know their SHA-1 (`NOSCRIPT`: a new or
    /// restarted Redis, or `SCRIPT FLUSH`); a few per Redis start.
    public let scriptLoads = Atomic<Int>(0)
    /// Commit script round trips, seconds.
    public let scriptSeconds = Histogram(bounds: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1])
}

func usleepMilliseconds(_ milliseconds: Int) { usleep(UInt32(milliseconds * 1000)) }
