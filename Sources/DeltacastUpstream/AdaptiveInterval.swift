import Foundation

/// An adaptive interval (`interval: { min, max }`): the topic's change rate, learned from its
/// polls, and the interval that follows from it. Times are milliseconds, given explicitly.
///
/// The interval is the geometric mean of the minimum and the topic's mean time between
/// changes, within the bounds: `√(min × 1/rate)`. At `min: 250ms`, a topic that changes every
/// second polls every 0.5 s, one that changes every hour every 30 s. Spending requests in
/// proportion to the square root of each topic's change rate is what minimises the mean delay
/// between a change and its detection for a given total request rate.
///
/// The rate is a ratio of two sums that fade with a time constant of ``memory`` (an hour): the
/// changes found, and the time the polls covered. A new topic starts from a weak prior of one
/// change per five maximum intervals, so its first interval is `√(5 × min × max)`; a change
/// found outweighs it at once, and a quiet topic drifts toward `max` as the quiet time adds up.
public struct AdaptiveInterval: Sendable, Equatable {
    public let minimum: Int64
    public let maximum: Int64
    /// Changes found, faded.
    public private(set) var changes: Double
    /// Milliseconds the polls covered, faded.
    public private(set) var covered: Double

    /// The time constant with which what was learned fades: an hour.
    public static let memory = 3_600_000.0
    /// The prior of a new topic: this many changes per maximum interval.
    public static let priorChanges = 0.2

    public init(minimum: Int64, maximum: Int64) {
        self.minimum = minimum
        self.maximum = maximum
        changes = Self.priorChanges
        covered = Double(maximum)
    }

    /// A poll covered `milliseconds` since the poll before it, and found a change or not.
    public mutating func record(covering milliseconds: Int64, changed: Bool) {
        let fade = exp(-Double(max(0, milliseconds)) / Self.memory)
        changes = changes * fade + (changed ? 1 : 0)
        covered = covered * fade + Double(max(0, milliseconds))
    }

    /// A change found by a poll whose time was already recorded (reported after it was judged).
    public mutating func recordChange() { changes += 1 }

    /// Changes per second learned so far.
    public var changesPerSecond: Double { covered > 0 ? changes / covered * 1000 : 0 }

    /// The interval now, milliseconds.
    public var milliseconds: Int64 {
        guard changes > 0, covered > 0 else { return maximum }
        let interval = (Double(minimum) * covered / changes).squareRoot()
        return interval >= Double(maximum) ? maximum : max(minimum, Int64(interval))
    }

    /// The same learned rate under new bounds (a configuration reload).
    public func rebounded(minimum: Int64, maximum: Int64) -> AdaptiveInterval {
        var next = AdaptiveInterval(minimum: minimum, maximum: maximum)
        next.changes = changes
        next.covered = covered
        return next
    }
}
