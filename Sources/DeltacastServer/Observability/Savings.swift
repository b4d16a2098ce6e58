import DeltacastBase
import DeltacastHub
import DeltacastLoop

/// The migration report's numbers that no topic holds (each topic counts its own: ``Topic/savings``):
/// change-index reads and detection delays by endpoint, and the last hour's history.
///
/// Limits: one entry per endpoint pattern; the history keeps ``historyLength`` samples, one
/// every ``samplePeriodMilliseconds`` (the last hour).
final class SavingsLedger: Sendable {
    /// Time between two history samples, and how many are kept (one hour).
    static let samplePeriodMilliseconds: Int64 = 5_000
    static let historyLength = 720
    /// Bounds of the detection delay histogram, seconds.
    static let delayBounds: [Double] = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300, 600, 3600]

    /// One point of the status page's chart: rates over the sample period before `wallMilliseconds`.
    struct Sample: Equatable {
        var wallMilliseconds: Int64
        var upstreamPerSecond: Double
        var avoidedPerSecond: Double
        /// The most used budget's share (nil: no budget).
        var budgetUsed: Double?
    }

    /// Change-index reads, by endpoint pattern.
    private let indexReads = Locked<[String: Int]>([:])
    /// Detection delay bounds (from the poll before the one that found a change), by endpoint.
    private let delays = Locked<[String: Histogram]>([:])
    private let history = Locked<(samples: [Sample], next: Int64, upstream: Int, direct: Double)>(([], 0, 0, 0))

    init() {}

    /// A read of `endpoint`'s change index (an upstream request no topic owns).
    func indexRead(endpoint: String) { indexReads.withLock { $0[endpoint, default: 0] += 1 } }

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

    /// `topics` (by endpoint pattern) with the change-index reads added to their upstream requests.
    func withIndexReads(_ topics: [String: SavingsCounts]) -> [String: SavingsCounts] {
        var totals = topics
        for (endpoint, reads) in indexReads.withLock({ $0 }) { totals[endpoint, default: SavingsCounts()].upstreamRequests += reads }
        return totals
    }

    /// The detection delay histograms, by endpoint.
    func delayHistograms() -> [String: Histogram] { delays.withLock { $0 } }

    /// Takes a history sample when one is due: the upstream and avoided request rates since the
    /// last, from `endpoints`' totals (read only when due), with `budgetUsed`. `intervals`
    /// gives each endpoint's interval (milliseconds). Returns whether it sampled.
    @discardableResult
    func sampleIfDue(now: Int64, wall: Int64, endpoints: () -> [String: SavingsCounts], intervals: [String: Int64], budgetUsed: Double?) -> Bool {
        guard history.withLock({ $0.next <= now }) else { return false }
        let totals = endpoints()
        let upstream = totals.values.reduce(0) { $0 + $1.upstreamRequests }
        let direct = totals.reduce(0.0) { $0 + $1.value.directRequests(intervalMilliseconds: intervals[$1.key] ?? 1000) }
        history.withLock { state in
            if state.next != 0 {
                let seconds = Double(Self.samplePeriodMilliseconds) / 1000
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
