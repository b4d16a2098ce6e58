import DeltacastLoop
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
