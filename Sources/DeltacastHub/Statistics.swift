import DeltacastBase
import Synchronization

/// A Prometheus histogram with fixed upper bounds: one lock per observation (observations are
/// per change or per poll, never per delivery).
public final class Histogram: Sendable {
    /// Upper bounds of the buckets (`le`), ascending; `+Inf` is implied.
    public let bounds: [Double]
    private let state: Locked<(counts: [Int], sum: Double, count: Int)>

    /// A histogram with these bucket bounds.
    public init(bounds: [Double]) {
        self.bounds = bounds
        self.state = Locked((counts: [Int](repeating: 0, count: bounds.count), sum: 0, count: 0))
    }

    /// Records one value.
    public func observe(_ value: Double) {
        state.withLock { state in
            if let index = bounds.firstIndex(where: { value <= $0 }) { state.counts[index] += 1 }
            state.sum += value
            state.count += 1
        }
    }

    /// Cumulative bucket counts (as Prometheus wants them), the sum and the count.
    public func snapshot() -> (cumulative: [Int], sum: Double, count: Int) {
        state.withLock { state in
            var running = 0
            return (state.counts.map { running += $0; return running }, state.sum, state.count)
        }
    }
}

/// What the hub counts for `/metrics`: changes by kind, the time diffs
/// take, patch and snapshot sizes, and the bytes patches saved the subscribers compared with
/// sending the whole body each time. Updated once per change, not per delivery.
public final class HubStatistics: Sendable {
    let snapshots = Atomic<Int>(0)
    let patches = Atomic<Int>(0)
    let unchanged = Atomic<Int>(0)
    let bytesSaved = Atomic<Int>(0)

    /// Changes that became snapshots.
    public var snapshotCount: Int { snapshots.load(ordering: .relaxed) }
    /// Changes that became patches (JSON Patch or Merge Patch).
    public var patchCount: Int { patches.load(ordering: .relaxed) }
    /// Upstream bodies or publishes that changed nothing a client can see.
    public var unchangedCount: Int { unchanged.load(ordering: .relaxed) }
    /// Bytes saved: for each patch, (body − event) × the subscribers it went to.
    public var savedBytes: Int { bytesSaved.load(ordering: .relaxed) }
    /// Seconds per diff.
    public let diffSeconds = Histogram(bounds: [0.00001, 0.0001, 0.001, 0.01, 0.1, 1])
    /// Patch event sizes, bytes.
    public let patchBytes = Histogram(bounds: [128, 512, 2048, 8192, 32768, 131072, 524288])
    /// Snapshot event sizes, bytes.
    public let snapshotBytes = Histogram(bounds: [128, 1024, 8192, 65536, 524288, 4194304])

    /// Counters start at zero.
    public init() {}
}

/// What a topic (or an endpoint, or the proxy) cost its upstream and what its clients were
/// given: the migration report's numbers.
public struct SavingsCounts: Equatable, Sendable {
    /// Requests sent to the upstream: polls (cold GETs and refreshes included) and change-index reads.
    public var upstreamRequests = 0
    /// Polls answered with a body or a `304`, and those whose answer changed the state.
    public var pollsAnswered = 0
    public var pollsChanged = 0
    /// Plain GETs answered from the proxy's state (200, 304, or held).
    public var mirroredGets = 0
    /// Events pushed to subscribers (one per subscriber per event).
    public var pushes = 0
    /// Bytes sent to clients (push events as JSON, GET bodies), and what full bodies would have been.
    public var bytesSent = 0
    public var bytesFull = 0
    /// Time summed over the subscribers while they were subscribed.
    public var subscriberMilliseconds: Int64 = 0

    /// All zero.
    public init() {}

    /// Adds `other`'s counts to these.
    public mutating func add(_ other: SavingsCounts) {
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
    public func directRequests(intervalMilliseconds: Int64) -> Double {
        Double(mirroredGets) + Double(subscriberMilliseconds) / Double(max(1, intervalMilliseconds))
    }
}

/// One topic's ``SavingsCounts`` as it runs: relaxed atomics, each written by whoever sees the
/// event (the upstream loop for polls, an event loop for a GET, the topic's lock holder for a
/// push), so counting costs no lock and no lookup.
public final class TopicSavings: Sendable {
    private let upstreamRequests = Atomic<Int>(0)
    private let pollsAnswered = Atomic<Int>(0)
    private let pollsChanged = Atomic<Int>(0)
    private let mirroredGets = Atomic<Int>(0)
    private let pushes = Atomic<Int>(0)
    private let bytesSent = Atomic<Int>(0)
    private let bytesFull = Atomic<Int>(0)

    init() {}

    /// One request sent to the upstream; `answered` when it brought a body or a `304`.
    public func upstreamRequest(answered: Bool) {
        upstreamRequests.add(1, ordering: .relaxed)
        if answered { pollsAnswered.add(1, ordering: .relaxed) }
    }

    /// A poll's answer changed the state.
    public func changed() { pollsChanged.add(1, ordering: .relaxed) }

    /// A plain GET answered with `sent` body bytes, where polling directly would have fetched `full`.
    public func mirroredGet(sent: Int, full: Int) {
        mirroredGets.add(1, ordering: .relaxed)
        if sent > 0 { bytesSent.add(sent, ordering: .relaxed) }
        if full > 0 { bytesFull.add(full, ordering: .relaxed) }
    }

    /// An event of `bytes` pushed to `subscribers`, each of whom would have fetched `full` bytes.
    func pushed(subscribers: Int, bytes: Int, full: Int) {
        pushes.add(subscribers, ordering: .relaxed)
        bytesSent.add(subscribers * bytes, ordering: .relaxed)
        bytesFull.add(subscribers * full, ordering: .relaxed)
    }

    /// The counts now, with `subscriberMilliseconds` (the topic keeps that one under its lock).
    func counts(subscriberMilliseconds: Int64) -> SavingsCounts {
        var counts = SavingsCounts()
        counts.upstreamRequests = upstreamRequests.load(ordering: .relaxed)
        counts.pollsAnswered = pollsAnswered.load(ordering: .relaxed)
        counts.pollsChanged = pollsChanged.load(ordering: .relaxed)
        counts.mirroredGets = mirroredGets.load(ordering: .relaxed)
        counts.pushes = pushes.load(ordering: .relaxed)
        counts.bytesSent = bytesSent.load(ordering: .relaxed)
        counts.bytesFull = bytesFull.load(ordering: .relaxed)
        counts.subscriberMilliseconds = subscriberMilliseconds
        return counts
    }
}
