import DeltacastBase
import DeltacastConfig
import DeltacastJSON
import Synchronization

// The parts of a ``Topic``'s state, each a value the topic holds under its lock.

/// Who subscribes to a topic.
struct Audience {
    /// Subscribers on each event loop (the loops a change is handed to).
    var loopCounts: [Int]
    /// Subscribers by transport, for the status page.
    var transportCounts = PerTransport(repeating: 0)
    /// Subscriber time summed up to `since`, when the subscriber count last changed.
    var subscriberTime: (total: Int64, since: Int64) = (0, 0)

    init(loops: Int) { loopCounts = [Int](repeating: 0, count: loops) }
}

/// What is wrong with a topic's upstream, and the poller's view of it.
struct UpstreamHealth {
    var problem: UpstreamProblem?
    /// Consecutive failed polls.
    var pollFailures = 0
    /// When the next poll is due (monotonic ms; 0: not polled).
    var nextPollAt: Int64 = 0
}

/// A topic's place in cluster mode's shared history.
struct ClusterSync {
    /// Redis cannot be reached (subscribers were told).
    var clusterUnavailable = false
    /// The shared state has been read at least once (a new topic is loading).
    var loaded: Bool
    /// Readers waiting for the catch-up in flight, and for the one after it (a reader whose
    /// cursor is newer than this node's state needs a read of Redis made after it arrived).
    /// nil: no catch-up in flight.
    var catchUpWaiters: [@Sendable () -> Void]?
    var nextCatchUpWaiters: [@Sendable () -> Void] = []

    init(loaded: Bool) { self.loaded = loaded }
}

/// When a topic was last used, read and written without its lock.
final class TopicActivity: Sendable {
    /// The last use, in ``Hub/tick()`` units (LRU eviction under `max_topics`).
    let usedTick = Atomic<Int64>(0)
    /// The last use on the hub's clock (lingering).
    let activeAt = Atomic<Int64>(0)
}
