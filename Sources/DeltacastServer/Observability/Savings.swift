import DeltacastHub
import DeltacastLoop

/// What one topic (or endpoint) cost its upstream and what its clients were given, counted as it
/// happens: the migration report's raw numbers.
struct Savings: Equatable, Sendable {
    /// Requests sent to the upstream: polls (cold GETs and refreshes included) and change-index reads.
    var upstreamRequests = 0
    /// Polls answered with a body or a `304`, and those whose answer changed the state.
    var pollsAnswered = 0
    var pollsChanged = 0
    /// Plain GETs answered from the proxy's state (200, 304, or held).
    var mirroredGets = 0
    /// Events pushed to subscribers (one per subscriber per change).
    var pushes = 0
    /// Bytes sent to clients (push events, GET bodies), and what full bodies would have been.
    var bytesSent = 0
    var bytesFull = 0
    /// Time summed over the subscribers while they were subscribed.
    var subscriberMilliseconds: Int64 = 0

    mutating func add(_ other: Savings) {
        upstreamRequests += other.upstreamRequests
        pollsAnswered += other.pollsAnswered
        pollsChanged += other.pollsChanged
        mirroredGets += other.mirroredGets
        pushes += other.pushes
        bytesSent += other.bytesSent
        bytesFull += other.bytesFull
        subscriberMilliseconds += other.subscriberMilliseconds
    }

    /// The requests the same clients would have made to the upstream without the proxy: each
    /// GET, and one poll per `interval` for each subscriber while it was subscribed.
    func directRequests(intervalMilliseconds: Int64) -> Double {
        Double(mirroredGets) + Double(subscriberMilliseconds) / Double(max(1, intervalMilliseconds))
    }
}

/// Counts what ``Savings`` holds, per topic, on every thread that sees it happen: one shard per
/// event loop (GETs, pushes, subscriber time) and one for the upstream loop (polls). A shard's
/// lock is taken by its own thread and, rarely, by a report, so it is uncontended.
///
/// Limits: a shard holds the topics its thread saw that still exist. Every
/// ``SavingsLedger/samplePeriodMilliseconds`` (and whenever a shard passes
/// ``SavingsLedger/maxTopicsPerShard``, 100,000 by default) the topics that are gone fold into
/// their endpoint's totals. The history keeps ``SavingsLedger/historyLength`` samples: the last hour.
final class SavingsLedger: Sendable {
    /// Time between two history samples, and how many are kept (one hour).
    static let samplePeriodMilliseconds: Int64 = 5_000
    static let historyLength = 720
    /// Bounds of the detection delay histogram, seconds.
    static let delayBounds: [Double] = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300, 600, 3600]

    struct Entry {
        let name: String
        let endpoint: String
        var savings = Savings()
        var subscribers = 0
        var since: Int64 = 0

        /// Subscriber time up to `now`, the current subscribers included.
        func savingsAt(_ now: Int64) -> Savings {
            var result = savings
            result.subscriberMilliseconds += Int64(subscribers) * max(0, now - since)
            return result
        }
    }

    struct Shard {
        var topics: [String: Entry] = [:]
        /// What topics that are gone counted, by endpoint pattern.
        var retired: [String: Savings] = [:]
    }

    /// One point of the status page's chart: rates over the sample period before `wallMilliseconds`.
    struct Sample: Equatable {
        var wallMilliseconds: Int64
        var upstreamPerSecond: Double
        var avoidedPerSecond: Double
        /// The most used budget's share (nil: no budget).
        var budgetUsed: Double?
    }

    private let shards: [Locked<Shard>]
    /// Whether a topic key still names a topic (until ``attach(live:)``: every key does).
    private let live = Locked<@Sendable (String) -> Bool>({ _ in true })
    /// Detection delay bounds (from the poll before the one that found a change), by endpoint.
    private let delays = Locked<[String: Histogram]>([:])
    private let history = Locked<(samples: [Sample], next: Int64, upstream: Int, direct: Double)>(([], 0, 0, 0))

    /// Topics one shard keeps before it folds the ones that are gone (a bound whatever the churn).
    let maxTopicsPerShard: Int

    /// A ledger for `loops` event loops, plus the upstream loop's shard (``upstreamShard``).
    init(loops: Int, maxTopicsPerShard: Int = 100_000) {
        shards = (0...loops).map { _ in Locked(Shard()) }
        self.maxTopicsPerShard = maxTopicsPerShard
    }

    /// `live` tells whether a topic key still names a topic (the hub, made after the ledger).
    func attach(live: @escaping @Sendable (String) -> Bool) { self.live.withLock { $0 = live } }

    var upstreamShard: Int { shards.count - 1 }

    /// Counts on `topic`'s entry in `shard` (made on first use).
    func count(_ shard: Int, _ topic: Topic, _ update: (inout Entry) -> Void) {
        count(shard, key: topic.key, name: topic.name, endpoint: topic.endpoint.path.text, update)
    }

    /// Counts on the entry of the topic `key` (named `name`, of the endpoint pattern `endpoint`).
    func count(_ shard: Int, key: String, name: String, endpoint: String, _ update: (inout Entry) -> Void) {
        let overflow = shards[shard].withLock { state -> Bool in
            update(&state.topics[key, default: Entry(name: name, endpoint: endpoint)])
            return state.topics.count > maxTopicsPerShard
        }
        if overflow { prune(shard, now: MonotonicClock.milliseconds()) }
    }

    /// Counts on an endpoint's totals (what no topic owns: change-index reads).
    func countEndpoint(_ shard: Int, _ endpoint: String, _ update: (inout Savings) -> Void) {
        shards[shard].withLock { update(&$0.retired[endpoint, default: Savings()]) }
    }

    /// A change was pushed to `deliveries` subscribers of `key` on `shard`'s loop: `bytes` sent,
    /// `fullBytes` what full bodies would have been. (Its subscribers made the topic's entry.)
    func pushed(_ shard: Int, key: String, deliveries: Int, bytes: Int, fullBytes: Int) {
        shards[shard].withLock { state in
            guard state.topics[key] != nil else { return }
            state.topics[key]!.savings.pushes += deliveries
            state.topics[key]!.savings.bytesSent += bytes
            state.topics[key]!.savings.bytesFull += fullBytes
        }
    }

    /// A subscriber came (`delta` 1) or went (-1) at `now`.
    func subscribers(_ shard: Int, _ topic: Topic, _ delta: Int, now: Int64) {
        subscribers(shard, key: topic.key, name: topic.name, endpoint: topic.endpoint.path.text, delta, now: now)
    }

    func subscribers(_ shard: Int, key: String, name: String, endpoint: String, _ delta: Int, now: Int64) {
        count(shard, key: key, name: name, endpoint: endpoint) { entry in
            entry.savings.subscriberMilliseconds += Int64(entry.subscribers) * max(0, now - entry.since)
            entry.since = now
            entry.subscribers = max(0, entry.subscribers + delta)
        }
    }

    /// A change was found `milliseconds` at most after it happened (the time since the poll before).
    func detected(endpoint: String, milliseconds: Int64) {
        let histogram = delays.withLock { table in
            if let existing = table[endpoint] { return existing }
            let created = Histogram(bounds: Self.delayBounds)
            table[endpoint] = created
            return created
        }
        histogram.observe(Double(milliseconds) / 1000)
    }

    /// Folds the topics of `shard` that are gone (and have no subscriber here) into
    /// their endpoint's totals.
    func prune(_ shard: Int, now: Int64) {
        let live = self.live.withLock { $0 }
        shards[shard].withLock { state in
            for (key, entry) in state.topics where entry.subscribers == 0 && !live(key) {
                state.retired[entry.endpoint, default: Savings()].add(entry.savingsAt(now))
                state.topics[key] = nil
            }
        }
    }

    /// Every topic's savings so far, by topic key (with its name and endpoint), and every
    /// endpoint's total (its topics and what topics that are gone counted).
    func totals(now: Int64) -> (topics: [String: (name: String, endpoint: String, savings: Savings)], endpoints: [String: Savings]) {
        var topics: [String: (name: String, endpoint: String, savings: Savings)] = [:]
        var endpoints: [String: Savings] = [:]
        for shard in shards {
            shard.withLock { state in
                for (key, entry) in state.topics {
                    let savings = entry.savingsAt(now)
                    topics[key, default: (entry.name, entry.endpoint, Savings())].savings.add(savings)
                    endpoints[entry.endpoint, default: Savings()].add(savings)
                }
                for (endpoint, savings) in state.retired { endpoints[endpoint, default: Savings()].add(savings) }
            }
        }
        return (topics, endpoints)
    }

    /// The detection delay histograms, by endpoint.
    func delayHistograms() -> [String: Histogram] { delays.withLock { $0 } }

    /// Takes a history sample when one is due: the upstream and avoided request rates since the
    /// last, with `budgetUsed`. `intervals` gives each endpoint's interval (milliseconds).
    /// Returns whether it sampled.
    @discardableResult
    func sampleIfDue(now: Int64, wall: Int64, intervals: [String: Int64], budgetUsed: Double?) -> Bool {
        let due = history.withLock { $0.next <= now }
        guard due else { return false }
        for shard in shards.indices { prune(shard, now: now) }
        let endpoints = totals(now: now).endpoints
        let upstream = endpoints.values.reduce(0) { $0 + $1.upstreamRequests }
        let direct = endpoints.reduce(0.0) { $0 + $1.value.directRequests(intervalMilliseconds: intervals[$1.key] ?? 1000) }
        history.withLock { state in
            let first = state.next == 0
            let seconds = Double(Self.samplePeriodMilliseconds) / 1000
            if !first {
                let upstreamRate = Double(upstream - state.upstream) / seconds
                let avoided = ((direct - state.direct) - Double(upstream - state.upstream)) / seconds
                state.samples.append(Sample(wallMilliseconds: wall, upstreamPerSecond: upstreamRate, avoidedPerSecond: avoided, budgetUsed: budgetUsed))
                if state.samples.count > Self.historyLength { state.samples.removeFirst(state.samples.count - Self.historyLength) }
            }
            state.upstream = upstream
            state.direct = direct
            state.next = now + Self.samplePeriodMilliseconds
        }
        return true
    }

    /// The history, oldest first.
    func samples() -> [Sample] { history.withLock { $0.samples } }
}
