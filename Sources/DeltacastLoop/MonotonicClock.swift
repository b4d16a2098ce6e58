#if canImport(Glibc)
import Glibc
#endif

/// The process's one monotonic clock (`CLOCK_MONOTONIC`): deadlines, timers, topic idleness,
/// latencies. Code whose timing is tested takes a clock parameter instead (``ConnectionDeadlines``
/// takes `now`, the poller a `PollClock`), and production passes this one.
public enum MonotonicClock {
    /// Milliseconds since an arbitrary fixed point.
    public static func milliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// Nanoseconds since the same point.
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}
