#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
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

    /// ``milliseconds()`` as of the kernel's last tick (`CLOCK_MONOTONIC_COARSE`): at most a
    /// tick (1-4 ms) behind, at a fraction of the cost. For bookkeeping read on every request
    /// (a topic's last use), never for deadlines or latencies.
    public static func coarseMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// Nanoseconds since the same point.
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// The wall clock (`CLOCK_REALTIME`): token `exp`, ticket lifetimes, cluster node liveness,
/// timestamps.
public enum WallClock {
    /// Milliseconds since the Unix epoch.
    public static func milliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// Now in UTC with milliseconds, ISO 8601: `2026-11-23T17:02:41.027Z` (log lines, `tail`).
    public static func timestamp() -> String {
        let now = milliseconds()
        var seconds = time_t(now / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = Int(now % 1000)
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}
