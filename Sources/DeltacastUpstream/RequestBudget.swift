/// The request budget of one upstream origin: a token bucket on explicit times (milliseconds of
/// a monotonic clock), so it is tested with a manual clock.
///
/// It refills at the rate in force and holds at most a burst of a tenth of a second's worth (at
/// least one request): in any window of `w` seconds at most `rate × w + burst` requests start.
/// The rate in force is the configured one, times this node's share (cluster mode: one over
/// the live nodes), halved for each `429` or `503` with `Retry-After` the origin sent, until the
/// time it asked for has passed (at least one request a minute remains).
public struct RequestBudget: Sendable, Equatable {
    /// Configured requests per second.
    public let ratePerSecond: Double
    /// This node's part of it (1 on a single node).
    public private(set) var share: Double = 1
    /// The largest burst: a tenth of a second's worth at the configured rate, at least 1.
    public var burst: Double { max(1, ratePerSecond * share / 10) }
    private var tokens: Double
    private var updated: Int64
    /// While `now < slowUntil`, the rate is divided by `slowDivisor`.
    private var slowUntil: Int64 = 0
    private var slowDivisor: Double = 1

    /// A full bucket at `now`.
    public init(ratePerSecond: Double, now: Int64) {
        self.ratePerSecond = ratePerSecond
        self.tokens = max(1, ratePerSecond / 10)
        self.updated = now
    }

    /// Requests per second allowed at `now`.
    public func rate(at now: Int64) -> Double {
        max(1.0 / 60, ratePerSecond * share / (now < slowUntil ? slowDivisor : 1))
    }

    /// Whether the origin asked to be spared (`Retry-After`) and that time has not passed.
    public func isSlowed(at now: Int64) -> Bool { now < slowUntil }

    private mutating func refill(_ now: Int64) {
        guard now > updated else { return }
        tokens = min(burst, tokens + Double(now - updated) * rate(at: now) / 1000)
        updated = now
    }

    /// Takes one request's token at `now`, if there is one.
    public mutating func take(at now: Int64) -> Bool {
        refill(now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Milliseconds from `now` until a token is there (0 when one is).
    public mutating func wait(at now: Int64) -> Int64 {
        refill(now)
        guard tokens < 1 else { return 0 }
        return max(1, Int64(((1 - tokens) * 1000 / rate(at: now)).rounded(.up)))
    }

    /// A new share (the live nodes changed); what the bucket holds is kept within the new burst.
    public mutating func setShare(_ share: Double, at now: Int64) {
        refill(now)
        self.share = min(1, max(0.001, share))
        tokens = min(tokens, burst)
    }

    /// The origin answered `429` or `503` with `Retry-After`: half the rate until `milliseconds`
    /// from `now` (halved again by each such answer meanwhile, to a floor of one a minute).
    public mutating func slowDown(at now: Int64, forMilliseconds milliseconds: Int64) {
        refill(now)
        slowDivisor = now < slowUntil ? min(slowDivisor * 2, 1_048_576) : 2
        slowUntil = max(slowUntil, now + milliseconds)
        tokens = min(tokens, burst)
    }
}

/// A binary min-heap: deferred polls by priority.
struct Heap<Element> {
    private var items: [Element] = []
    private let less: (Element, Element) -> Bool

    init(by less: @escaping (Element, Element) -> Bool) { self.less = less }

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var first: Element? { items.first }

    mutating func push(_ item: Element) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(items[child], items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count && less(items[left], items[smallest]) { smallest = left }
            if right < items.count && less(items[right], items[smallest]) { smallest = right }
            guard smallest != parent else { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
