import DeltacastBase
public import DeltacastConfig
import DeltacastCrypto
public import DeltacastJSON
import DeltacastWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Cluster mode's side of a topic's state (DeltacastCluster implements it): new states are
/// committed to the shared history before any node applies them, and only the leader polls.
/// Nothing here waits for Redis: each call returns at once, and its completion is called later,
/// on the cluster's own thread.
public protocol TopicReplication: AnyObject, Sendable {
    /// A new full body for `topic` (its poll, or a publish), already parsed when it is JSON:
    /// commits the change cluster-wide and applies it here, then calls `completion` with the
    /// outcome (``Topic/UpdateError/clusterUnavailable(_:)`` when Redis could not take it).
    func update(_ topic: Topic, parsed: JSONDocument?, body: [UInt8], contentType: String,
                completion: @escaping @Sendable (Result<Topic.UpdateOutcome, Topic.UpdateError>) -> Void)
    /// Whether this node should poll `topic` now (it holds the topic's lease).
    func mayPoll(_ topic: Topic) -> Bool
    /// Brings `topic` up to the shared state (its first load, or a reader holding a cursor
    /// newer than this node's), then calls `completion`, whether Redis answered or not.
    func catchUp(_ topic: Topic, completion: @escaping @Sendable () -> Void)
    /// This node's poll of `topic` found the upstream failing (`problem`) or well again (nil):
    /// every node's subscribers are told, not only this one's.
    func upstreamChanged(_ topic: Topic, problem: UpstreamProblem?)
    /// The live nodes (at least 1): each spends its share of every upstream request budget.
    var liveNodeCount: Int { get }
}

/// The topic table: finds or creates topics by name, bounds how many exist
/// (`limits.max_topics`, least recently used without subscribers evicted first), and owns the
/// shared encoder for changes. Changes reach the event loops through `deliver`.
public final class Hub: Sendable {
    /// The configuration in force, with what is derived from it; replaced whole by a reload.
    private struct Settings {
        var configuration: Configuration
        var matcher: EndpointMatcher
        /// Endpoint indices by path pattern (a reload's endpoints are matched by path).
        var indexByPath: [String: Int]
        init(_ configuration: Configuration) {
            self.configuration = configuration
            matcher = EndpointMatcher(endpoints: configuration.endpoints)
            indexByPath = Dictionary(configuration.endpoints.enumerated().map { ($1.path.text, $0) }, uniquingKeysWith: { first, _ in first })
        }
    }
    private let settings: Locked<Settings>
    /// The configuration in force (the latest reload's).
    public var configuration: Configuration { settings.withLock { $0.configuration } }
    /// Maps targets to endpoints and topic names, for the configuration in force.
    public var matcher: EndpointMatcher { settings.withLock { $0.matcher } }
    /// The limits in force (journal bounds, `max_topics`).
    public var limits: Configuration.Limits { settings.withLock { $0.configuration.limits } }
    /// Event loops that may have subscribers (indices 0..<loopCount).
    public let loopCount: Int
    /// Counters and histograms for `/metrics`.
    public let statistics = HubStatistics()
    /// Where finished changes go: the server's event loops.
    let delivery: any ChangeDelivery
    let created: @Sendable (Topic) -> Void
    private let topics = Locked<[String: Topic]>([:])
    /// Mixed into credential digests, so a digest says nothing outside this process (in
    /// cluster mode, outside the cluster: every node shares one, so one credential is one topic
    /// everywhere).
    private let salt: [UInt8]
    /// Cluster mode: where new states are committed (nil: one process, the topic applies them).
    public let replication: (any TopicReplication)?
    private let deflater = Locked<DeflaterBox>(DeflaterBox())
    /// The clock of lingering, last uses and changes, polls' due times and subscriber time.
    public let clock: any HubClock

    /// A hub for `loopCount` loops whose changes go to `delivery`. `created` hears of every
    /// new topic (the poller starts polling it), outside the table's lock. `clock` is the
    /// coarse monotonic clock unless a test gives one it moves by hand.
    public init(configuration: Configuration, loopCount: Int, delivery: any ChangeDelivery,
                created: @escaping @Sendable (Topic) -> Void = { _ in }, salt: [UInt8]? = nil, replication: (any TopicReplication)? = nil,
                clock: any HubClock = SystemHubClock()) {
        self.clock = clock
        self.salt = salt ?? (0..<16).map { _ in UInt8.random(in: 0...255) }
        self.replication = replication
        self.settings = Locked(Settings(configuration))
        self.loopCount = loopCount
        self.delivery = delivery
        self.created = created
    }

    /// A hub whose changes go to `deliver(loop, change)` (tests).
    public convenience init(configuration: Configuration, loopCount: Int, deliver: @escaping @Sendable (Int, Change) -> Void,
                            replication: (any TopicReplication)? = nil, clock: any HubClock = SystemHubClock()) {
        self.init(configuration: configuration, loopCount: loopCount, delivery: ClosureDelivery(deliver), replication: replication, clock: clock)
    }

    /// The headers of `request` an `auth: passthrough` endpoint forwards (its
    /// `forward_headers`), in configuration order; empty for other endpoints.
    public func credentials(endpoint: Configuration.Endpoint, header: (String) -> String?) -> [(name: String, value: String)] {
        guard endpoint.auth == .passthrough else { return [] }
        return endpoint.forwardHeaders.compactMap { name in header(name).map { (name, $0) } }
    }

    /// The table key of a topic: its name, plus for `auth: passthrough` a salted digest of the
    /// forwarded credentials (DESIGN.md "Topics"), so one credential's data never reaches another.
    public func key(name: String, endpoint index: Int, credentials: [(name: String, value: String)]) -> String {
        key(name: name, auth: settings.withLock { $0.configuration.endpoints[index].auth }, credentials: credentials)
    }

    private func key(name: String, auth: AuthMode, credentials: [(name: String, value: String)]) -> String {
        guard auth == .passthrough else { return name }
        var material = salt
        for credential in credentials {
            material += Array(credential.name.lowercased().utf8) + [0] + Array(credential.value.utf8) + [0]
        }
        let digest = Hex.encode(SHA1.digest(material).prefix(12))
        return name + " #" + digest
    }

    /// Why a topic could not be had.
    public enum TopicError: Error, Equatable {
        /// `limits.max_topics` topics exist and every one has subscribers.
        case tooMany(Int)
        /// A reload removed the endpoint (the caller matched against the previous configuration).
        case endpointRemoved(String)
    }

    /// The topic named `name` of `endpoint` (matched by its path pattern against the
    /// configuration in force, so a caller still holding the previous configuration during a
    /// reload gets the current endpoint, or ``TopicError/endpointRemoved(_:)``).
    public func topic(named name: String, endpoint: Configuration.Endpoint, credentials: [(name: String, value: String)] = []) throws(TopicError) -> Topic {
        try topic(named: name, path: endpoint.path.text, credentials: credentials)
    }

    /// The topic named `name` of the endpoint declared at `path`, as above. A topic that exists
    /// is found with the endpoint's `auth` alone (every poll looks its topic up: copying the
    /// whole endpoint for it cost more than the lookup); only a new one reads the rest.
    public func topic(named name: String, path: String, credentials: [(name: String, value: String)] = []) throws(TopicError) -> Topic {
        let auth = settings.withLock { settings in settings.indexByPath[path].map { settings.configuration.endpoints[$0].auth } }
        guard let auth else { throw .endpointRemoved(path) }
        let key = key(name: name, auth: auth, credentials: credentials)
        let now = clock.milliseconds
        // Touched under the table's lock, as below: an idle topic is evicted under it too.
        let existing = topics.withLock { table in
            let found = table[key]
            found?.touch(tick(), now: now)
            return found
        }
        if let existing { return existing }
        let current = settings.withLock { settings in
            settings.indexByPath[path].map { (settings.configuration.endpoints[$0], settings.configuration.limits.maxTopics) }
        }
        guard let (endpoint, maxTopics) = current else { throw .endpointRemoved(path) }
        return try topic(named: name, endpoint: endpoint, maxTopics: maxTopics, credentials: credentials)
    }

    /// The topic named `name` of endpoint `index` (for the holder of `credentials` under
    /// `auth: passthrough`), created when missing. Looking a topic up counts as using it: it
    /// will not be evicted for `linger` from now.
    public func topic(named name: String, endpoint index: Int, credentials: [(name: String, value: String)] = []) throws(TopicError) -> Topic {
        let (endpoint, maxTopics) = settings.withLock { ($0.configuration.endpoints[index], $0.configuration.limits.maxTopics) }
        return try topic(named: name, endpoint: endpoint, maxTopics: maxTopics, credentials: credentials)
    }

    /// Finds or creates the topic; `endpoint` and `maxTopics` come from one read of the settings.
    private func topic(named name: String, endpoint: Configuration.Endpoint, maxTopics: Int,
                       credentials: [(name: String, value: String)]) throws(TopicError) -> Topic {
        let key = key(name: name, auth: endpoint.auth, credentials: credentials)
        let now = clock.milliseconds
        let result = topics.withLock { table -> Result<(Topic, Bool), TopicError> in
            if let existing = table[key] { existing.touch(tick(), now: now); return .success((existing, false)) }
            if table.count >= maxTopics {
                let idle = table.values.filter { $0.subscriberCount == 0 }.min { $0.lastUsed < $1.lastUsed }
                guard let idle else { return .failure(.tooMany(maxTopics)) }
                table[idle.key] = nil
                retire(idle)
            }
            let topic = Topic(name: name, key: key, endpoint: endpoint, credentials: credentials, hub: self)
            topic.touch(tick(), now: now)
            table[key] = topic
            return .success((topic, true))
        }
        let (topic, isNew) = try result.get()
        if isNew { created(topic) }
        return topic
    }

    /// An existing topic by key, without creating one.
    public func existingTopic(key: String) -> Topic? { topics.withLock { $0[key] } }

    /// Whether `topic` is still the one the table holds under its key (not evicted).
    public func holds(_ topic: Topic) -> Bool { topics.withLock { $0[topic.key] === topic } }

    /// Evicts `topic` when it has been idle (no subscriber, no use) for its endpoint's `linger`;
    /// returns whether it is gone. A later request recreates it with a new epoch.
    public func evictIfIdle(_ topic: Topic) -> Bool {
        let now = clock.milliseconds
        return topics.withLock { table in
            guard table[topic.key] === topic else { return true }
            guard topic.isIdle(now: now) else { return false }
            table[topic.key] = nil
            retire(topic)
            return true
        }
    }

    /// What a reload did to the topic table.
    public struct Reconfiguration: Sendable {
        /// Endpoint paths new in this configuration.
        public var added: [String] = []
        /// Endpoint paths gone (or replaced: `source`, `auth` or `forward_headers` changed).
        public var removed: [String] = []
        /// Endpoint paths whose other settings changed.
        public var changed: [String] = []
        /// Endpoints exactly as before.
        public var unchanged = 0
        /// Topics that ended (their subscribers got `error` `not_found`): stop polling them.
        public var endedTopics: [Topic] = []
        /// Topics whose endpoint settings changed: poll them with the new ones.
        public var changedTopics: [Topic] = []
    }

    /// Puts `new` in force. Endpoints are matched by path pattern: topics of unchanged
    /// endpoints are untouched (same epoch, journal and state); topics of changed ones take
    /// the new settings (the next change is diffed with them); topics of removed or replaced
    /// endpoints leave the table, and their subscribers get an `error` event, `not_found`.
    public func reconfigure(_ new: Configuration) -> Reconfiguration {
        var result = Reconfiguration()
        let newByPath = Dictionary(new.endpoints.map { ($0.path.text, $0) }, uniquingKeysWith: { first, _ in first })
        let old = settings.withLock { settings in
            let old = settings.configuration
            settings = Settings(new)
            return old
        }
        let oldByPath = Dictionary(old.endpoints.map { ($0.path.text, $0) }, uniquingKeysWith: { first, _ in first })
        for endpoint in new.endpoints {
            guard let previous = oldByPath[endpoint.path.text] else { result.added.append(endpoint.path.text); continue }
            if endpoint.changesTopicIdentity(from: previous) {
                result.removed.append(endpoint.path.text)
                result.added.append(endpoint.path.text)
            } else if endpoint.hasSameSettings(as: previous) {
                result.unchanged += 1
            } else {
                result.changed.append(endpoint.path.text)
            }
        }
        result.removed += old.endpoints.map(\.path.text).filter { newByPath[$0] == nil }
        let removed = Set(result.removed), changed = Set(result.changed)
        let ended = topics.withLock { table -> [Topic] in
            let gone = table.values.filter { removed.contains($0.pattern) }
            for topic in gone {
                table[topic.key] = nil
                retire(topic)
            }
            return gone
        }
        for topic in ended {
            let replaced = newByPath[topic.endpoint.path.text] != nil
            topic.end(code: .notFound, message: replaced
                      ? "a configuration reload replaced this endpoint (source, auth or forward_headers changed); subscribe again"
                      : "a configuration reload removed this endpoint")
        }
        result.endedTopics = ended
        for topic in allTopics where changed.contains(topic.endpoint.path.text) {
            topic.reconfigure(newByPath[topic.endpoint.path.text]!)
            result.changedTopics.append(topic)
        }
        return result
    }

    /// Every topic now (admin refresh, metrics).
    public var allTopics: [Topic] { topics.withLock { Array($0.values) } }

    /// What topics that left the table counted, by endpoint pattern (the migration report
    /// keeps them; a topic's counts after it left are not).
    private let retiredSavings = Locked<[String: SavingsCounts]>([:])

    private func retire(_ topic: Topic) {
        let counts = topic.savingsCounts()
        retiredSavings.withLock { $0[topic.pattern, default: SavingsCounts()].add(counts) }
    }

    /// The migration report's numbers by endpoint pattern: the topics alive (with subscriber
    /// time up to now) and those that left.
    public func savingsByEndpoint() -> [String: SavingsCounts] {
        var totals = retiredSavings.withLock { $0 }
        for topic in allTopics { totals[topic.pattern, default: SavingsCounts()].add(topic.savingsCounts()) }
        return totals
    }

    /// Topics that exist now.
    public var topicCount: Int { topics.withLock { $0.count } }

    func makeChange(topic: String, key: String, kind: Change.Kind, cursor: Cursor?, base: Cursor?, event: [UInt8], stateBytes: Int = 0) -> Change {
        deflater.withLock { box in
            Change(topic: topic, key: key, kind: kind, cursor: cursor, base: base, event: event, stateBytes: stateBytes, deflater: box.deflater)
        }
    }

    private let uses = Atomic<Int64>(0)
    /// A use counter: topics record it when used, and the smallest is the least recently used
    /// (a clock in milliseconds would tie).
    func tick() -> Int64 { uses.add(1, ordering: .relaxed).newValue }

}

/// The shared compressor, only used under the hub's lock.
struct DeflaterBox: @unchecked Sendable {
    let deflater = Deflater(windowBits: 15)
}

/// Milliseconds on a monotonic clock: what the hub and its topics measure time with.
public protocol HubClock: Sendable {
    /// Now, in milliseconds.
    var milliseconds: Int64 { get }
}

/// The system's coarse monotonic clock (a few milliseconds of resolution, and cheap).
public struct SystemHubClock: HubClock {
    /// The system clock.
    public init() {}
    public var milliseconds: Int64 { MonotonicClock.coarseMilliseconds() }
}

/// Where a hub hands finished changes: each event loop with subscribers gets the same
/// ``Change``. Called with the topic's lock held, so it must only enqueue.
public protocol ChangeDelivery: AnyObject, Sendable {
    /// Hands `change` to event loop `loop` (0..<``Hub/loopCount``).
    func deliver(_ change: Change, toLoop loop: Int)
}

/// A ``ChangeDelivery`` made of a closure.
private final class ClosureDelivery: ChangeDelivery {
    let deliver: @Sendable (Int, Change) -> Void
    init(_ deliver: @escaping @Sendable (Int, Change) -> Void) { self.deliver = deliver }
    func deliver(_ change: Change, toLoop loop: Int) { deliver(loop, change) }
}
