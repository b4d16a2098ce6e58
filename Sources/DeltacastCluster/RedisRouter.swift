import DeltacastBase
public import DeltacastConfig
public import DeltacastLoop

/// Where commands go: one Redis, or a Redis Cluster's primaries by hash slot.
///
/// With a Redis Cluster it keeps the slot map and one ``RedisConnection`` per primary. `MOVED`
/// updates the map and resends; `ASK` sends `ASKING` and the command to the slot's new home;
/// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`, a script that reached a key the node
/// no longer serves, and a primary that is not connected are retried with backoff (25 ms
/// doubling) until the command timeout, then fail as ``RedisFailure/unavailable(_:)``. The map
/// is read again (`CLUSTER SLOTS`) after a redirection, a lost primary, a slot's subscription
/// ending, and every 5 s; while some slot has no reachable primary it is read every 250 ms.
///
/// Each primary has a ``Shard``: the lowest slot it serves, where its own changes stream and
/// channel live. Every method runs on `loop`.
public final class RedisRouter: @unchecked Sendable {
    public typealias Callback = RedisConnection.Callback

    /// A primary's own key space: the hash tag of the lowest slot it serves (nil for one Redis).
    public struct Shard: Hashable, Sendable {
        public let tag: String?
        /// Where it is (for logs and the status page).
        public let address: String
    }

    public let loop: EventLoop
    public let address: Configuration.RedisURL
    public let name: String
    public let limits: RedisConnection.Limits
    /// Called when every slot has a connected primary again (at start, after an outage).
    public var onReady: (() -> Void)?
    /// Called once when some slot loses its primary's connection: the reason.
    public var onDown: ((String) -> Void)?
    /// Replies no command waits for (subscriber mode), from any primary.
    public var onPush: ((RESPValue) -> Void)?
    /// Called on each primary's connection once it is ready (subscribe there), and again for
    /// every primary when the shards changed.
    public var onShardReady: ((RedisConnection, Shard) -> Void)?
    /// Called when the set of shards changed (a primary came or went, or its lowest slot moved).
    public var onShardsChanged: (() -> Void)?

    private var map: SlotMap
    /// Where redirections, retries and map reads are counted.
    private let metrics: ClusterMetrics?
    private var connections: [Configuration.RedisURL.Seed: RedisConnection] = [:]
    /// Commands sent by connections since closed.
    private var sentByClosed = 0
    /// Redis answered at start (``Cluster`` reads the salt first), so it counts as up until a
    /// connection fails.
    private var reportedReady = true
    private var refreshing = false
    private var refreshTimer: UInt64?
    /// Commands waiting for a retry (a redirection storm or an outage); past
    /// ``maximumRetrying`` (default 10,000) a command fails at once.
    private var retrying = 0
    public let maximumRetrying: Int
    private var stopped = false
    /// The router whose slot map this one takes instead of reading its own (a subscriber's
    /// connections are in subscribe mode, where `CLUSTER SLOTS` is refused).
    private weak var leader: RedisRouter?
    /// Routers that take this one's slot map.
    private var followers: [RedisRouter] = []

    /// One Redis: every command goes to `address`.
    public init(loop: EventLoop, address: Configuration.RedisURL, name: String, limits: RedisConnection.Limits = .init(), map: SlotMap? = nil,
                metrics: ClusterMetrics? = nil, maximumRetrying: Int = 10_000) {
        self.metrics = metrics
        self.maximumRetrying = maximumRetrying
        self.loop = loop
        self.address = address
        self.name = name
        self.limits = limits
        self.map = map ?? SlotMap()
        if !address.isCluster {
            connections[.init(host: address.host, port: address.port)] = makeConnection(.init(host: address.host, port: address.port))
        }
    }

    public var isCluster: Bool { address.isCluster }

    /// Connects to every primary (on the loop).
    public func start() {
        loop.execute { [self] in
            if isCluster {
                syncConnections()
                scheduleRefresh(after: 5000)
            }
            for connection in connections.values { connection.start() }
        }
    }

    public func stop() {
        loop.execute { [self] in
            stopped = true
            if let refreshTimer { loop.cancelTimer(refreshTimer) }
            for connection in connections.values { connection.stop() }
        }
    }

    /// Whether every slot has a connected primary (on the loop).
    public var isReady: Bool { ready(excluding: nil) }

    /// Whether every slot has a connected primary, `failing` counted as not connected (a
    /// connection reports its loss before it changes state).
    private func ready(excluding failing: Configuration.RedisURL.Seed?) -> Bool {
        let up = { (seed: Configuration.RedisURL.Seed) in seed != failing && (self.connections[seed]?.isReady ?? false) }
        if !isCluster { return connections.keys.first.map(up) ?? false }
        return map.isComplete && map.primaries.allSatisfy(up)
    }

    /// Commands sent since the start (a script is one).
    public var sent: Int { sentByClosed + connections.values.reduce(0) { $0 + $1.sent.load(ordering: .relaxed) } }

    /// Each primary's shard (one Redis: one shard).
    public var shards: [Shard] {
        guard isCluster else { return [Shard(tag: nil, address: "\(address.host):\(address.port)")] }
        return map.primaries.compactMap(shard(of:))
    }

    /// Each primary and the slots it serves (the status page).
    public var slotRanges: [(address: String, slots: String)] {
        guard isCluster else { return [(address: "\(address.host):\(address.port)", slots: "0-16383")] }
        return map.primaries.map { (address: $0.description, slots: map.ranges(of: $0)) }
    }

    /// The shards that serve any of `slots` now.
    public func shards(serving slots: Set<Int>) -> Set<Shard> {
        guard isCluster else { return Set(shards) }
        var found = Set<Shard>()
        var seen = Set<Configuration.RedisURL.Seed>()
        for slot in slots {
            guard let primary = map.primary(of: slot), seen.insert(primary).inserted, let shard = shard(of: primary) else { continue }
            found.insert(shard)
            if seen.count == map.primaries.count { break }
        }
        return found
    }

    /// The shard that serves `key`'s slot now, if any.
    public func shard(forKey key: String) -> Shard? {
        guard isCluster else { return shards.first }
        return map.primary(of: HashSlot.of(key)).flatMap(shard(of:))
    }

    private func shard(of primary: Configuration.RedisURL.Seed) -> Shard? {
        guard isCluster else { return Shard(tag: nil, address: "\(address.host):\(address.port)") }
        return map.firstSlot(of: primary).map { Shard(tag: HashSlot.tag(for: $0), address: primary.description) }
    }

    // MARK: Commands

    /// Sends the command `build` makes for the shard that serves `key`'s slot; `callback` gets
    /// the reply (a redirection followed) or the failure.
    public func send(key: String, _ build: @escaping (Shard) -> [[UInt8]], _ callback: Callback?) {
        let deadline = MonotonicClock.milliseconds() + limits.commandTimeout
        dispatch(slot: HashSlot.of(key), build: build, deadline: deadline, attempt: 0, callback)
    }

    public func send(key: String, _ command: [[UInt8]], _ callback: Callback?) {
        send(key: key, { _ in command }, callback)
    }

    /// Sends to `shard`'s primary (its own keys).
    public func send(shard: Shard, _ build: @escaping (Shard) -> [[UInt8]], _ callback: Callback?) {
        send(key: shard.tag.map { "{\($0)}" } ?? "", build, callback)
    }

    /// Sends `command` to every primary, without waiting for replies (a subscriber's `PING`).
    public func sendToEach(_ command: [String]) {
        for primary in isCluster ? map.primaries : Array(connections.keys) { connections[primary]?.send(command, nil) }
    }

    private func dispatch(slot: Int, build: @escaping (Shard) -> [[UInt8]], deadline: Int64, attempt: Int, asking: Configuration.RedisURL.Seed? = nil,
                          _ callback: Callback?) {
        let connection: RedisConnection
        let shard: Shard
        if let asking {
            // A slot migrating: this one command goes to the importing node, which may be a
            // primary with no slot yet (not in the map): reach it now.
            if connections[asking] == nil {
                let made = makeConnection(asking)
                connections[asking] = made
                made.start()
            }
            guard let known = connections[asking], let home = self.shard(of: asking) ?? map.primary(of: slot).flatMap(self.shard(of:)) else {
                return retry(slot: slot, build: build, deadline: deadline, attempt: attempt, reason: "no primary serves slot \(slot)", callback)
            }
            connection = known
            shard = home
            connection.send(["ASKING"], nil)
        } else {
            let target = isCluster ? map.primary(of: slot) : connections.keys.first
            guard let target, let known = connections[target], let home = self.shard(of: target), known.acceptsCommands || !isCluster else {
                return retry(slot: slot, build: build, deadline: deadline, attempt: attempt,
                             reason: map.primary(of: slot).map { "the primary of slot \(slot), \($0), is not connected" } ?? "no primary serves slot \(slot)", callback)
            }
            connection = known
            shard = home
        }
        connection.send(build(shard)) { [weak self] result in
            guard let self, self.isCluster, case .success(.error(let message)) = result, let redirect = ClusterReply.parse(message) else {
                callback?(result)
                return
            }
            switch redirect {
            case .moved(let slot, let to) where attempt < 5:
                self.metrics?.redisMoved.add(1, ordering: .relaxed)
                var moved = self.map
                moved.assign(slot...slot, to: to)
                self.adopt(moved)
                self.refresh()
                self.dispatch(slot: slot, build: build, deadline: deadline, attempt: attempt + 1, callback)
            case .ask(let slot, let to) where attempt < 5:
                self.metrics?.redisAsked.add(1, ordering: .relaxed)
                self.dispatch(slot: slot, build: build, deadline: deadline, attempt: attempt + 1, asking: to, callback)
            case .retry(let reason):
                self.refresh()
                self.retry(slot: slot, build: build, deadline: deadline, attempt: attempt, reason: reason, callback)
            default:
                callback?(.failure(.unavailable("Redis Cluster redirected the command more than 5 times: \(message)")))
            }
        }
    }

    /// Tries again after a backoff, unless the deadline passed: then fails with `reason`.
    private func retry(slot: Int, build: @escaping (Shard) -> [[UInt8]], deadline: Int64, attempt: Int, reason: String, _ callback: Callback?) {
        let wait = min(25 << min(attempt, 6), 1000)
        guard retrying < maximumRetrying else {
            callback?(.failure(.unavailable("more than \(maximumRetrying) commands wait for a retry: \(reason)")))
            return
        }
        guard !stopped, MonotonicClock.milliseconds() + Int64(wait) < deadline else {
            callback?(.failure(.unavailable(reason)))
            return
        }
        if !isReady { refresh() }
        metrics?.redisRetried.add(1, ordering: .relaxed)
        retrying += 1
        loop.schedule(afterMilliseconds: Int64(wait)) { [weak self] in
            guard let self else { return }
            self.retrying -= 1
            self.dispatch(slot: slot, build: build, deadline: deadline, attempt: attempt + 1, callback)
        }
    }

    // MARK: The slot map

    /// Takes `leader`'s slot map from now on, whenever it changes, instead of reading one (on
    /// the loop; both routers on the same loop).
    public func follow(_ leader: RedisRouter) {
        loop.execute { [self] in
            guard isCluster else { return }
            self.leader = leader
            leader.followers.append(self)
            adopt(leader.map)
        }
    }

    /// Reads the slot map from a connected node (a primary, else a seed); one read at a time.
    /// A follower asks its leader to.
    public func refresh() {
        guard isCluster, !stopped else { return }
        if let leader { return leader.refresh() }
        guard !refreshing else { return }
        let candidates = map.primaries + address.seeds
        guard let source = candidates.first(where: { connections[$0]?.isReady ?? false }) else {
            // No node answers: reach the seeds too, and look again shortly.
            for seed in address.seeds where connections[seed] == nil {
                let connection = makeConnection(seed)
                connections[seed] = connection
                connection.start()
            }
            scheduleRefresh(after: 250)
            return
        }
        refreshing = true
        connections[source]?.send(["CLUSTER", "SLOTS"]) { [weak self] result in
            guard let self else { return }
            self.refreshing = false
            if case .success(let reply) = result, case .success(let fresh) = SlotMap.parse(reply, fallbackHost: source.host) {
                self.metrics?.slotMapReads.add(1, ordering: .relaxed)
                self.adopt(fresh)
            } else {
                self.checkReady(reason: "slot map")
            }
            if !self.isReady { self.scheduleRefresh(after: 250) }
        }
    }

    /// Puts `fresh` in force: connections follow it, shards that changed are announced (and
    /// subscribed again), and the followers take it too.
    private func adopt(_ fresh: SlotMap) {
        let before = shards
        map = fresh
        syncConnections()
        if shards != before {
            onShardsChanged?()
            for primary in map.primaries {
                if let connection = connections[primary], connection.isReady, let shard = shard(of: primary) {
                    onShardReady?(connection, shard)
                }
            }
        }
        checkReady(reason: "slot map")
        for follower in followers { follower.adopt(fresh) }
    }

    private func scheduleRefresh(after milliseconds: Int64) {
        guard !stopped else { return }
        if let refreshTimer { loop.cancelTimer(refreshTimer) }
        refreshTimer = loop.schedule(afterMilliseconds: milliseconds) { [weak self] in
            guard let self else { return }
            self.refreshTimer = nil
            self.refresh()
            if self.isReady { self.scheduleRefresh(after: 5000) }
        }
    }

    /// One connection per primary (and per seed while no primary answers); others close once
    /// no command waits on them (an `ASK` may have sent one to a node that is not a primary).
    private func syncConnections() {
        guard isCluster else { return }
        for primary in map.primaries where connections[primary] == nil {
            let connection = makeConnection(primary)
            connections[primary] = connection
            if !stopped { connection.start() }
        }
        let keep = Set(map.primaries)
        let seedsNeeded = !map.primaries.contains { connections[$0]?.isReady ?? false }
        for (address, connection) in connections
        where !keep.contains(address) && !(seedsNeeded && self.address.seeds.contains(address)) && connection.isIdle {
            sentByClosed += connection.sent.load(ordering: .relaxed)
            connection.onDown = nil
            connection.onReady = nil
            connection.stop()
            connections[address] = nil
        }
    }

    private func makeConnection(_ seed: Configuration.RedisURL.Seed) -> RedisConnection {
        let connection = RedisConnection(loop: loop, address: address.at(host: seed.host, port: seed.port), name: name, limits: limits)
        connection.onPush = { [weak self] value in
            guard let self else { return }
            // A sharded subscription ends when its slot moves: read where it went.
            if value.elements?.first?.text == "sunsubscribe" { self.refresh() }
            self.onPush?(value)
        }
        connection.onReady = { [weak self, weak connection] in
            guard let self, let connection else { return }
            if let shard = self.shard(of: seed), !self.isCluster || self.map.primaries.contains(seed) { self.onShardReady?(connection, shard) }
            if self.isCluster && !self.map.primaries.contains(seed) { self.refresh() }
            self.checkReady(reason: "connected")
        }
        connection.onDown = { [weak self] reason in
            guard let self else { return }
            if self.isCluster { self.refresh() }
            self.checkReady(reason: self.isCluster ? "\(seed): \(reason)" : reason, failing: seed)
        }
        return connection
    }

    private func checkReady(reason: String, failing: Configuration.RedisURL.Seed? = nil) {
        let ready = ready(excluding: failing)
        if ready && !reportedReady {
            reportedReady = true
            onReady?()
        } else if !ready && reportedReady {
            reportedReady = false
            onDown?(isCluster && !map.isComplete ? "the slot map covers \(map.covered) of 16384 slots (CLUSTERDOWN)" : reason)
        }
    }
}
