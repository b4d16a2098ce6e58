public import DeltacastLoop

/// Time and timers as the ``Poller`` sees them: the event loop in production, a manual clock in
/// tests (schedule, backoff, `Retry-After` and linger are then checked without sleeping).
public protocol PollClock: AnyObject {
    /// Milliseconds on a monotonic clock.
    var nowMilliseconds: Int64 { get }
    /// Runs `callback` once, `milliseconds` from now; returns an id for ``cancel(_:)``.
    func schedule(afterMilliseconds milliseconds: Int64, _ callback: @escaping () -> Void) -> UInt64
    /// Cancels a scheduled callback (nothing when it ran already).
    func cancel(_ id: UInt64)
}

/// Upstream requests as the ``Poller`` sees them: libcurl in production, a scripted double in
/// tests. The completion runs on the poller's thread.
public protocol UpstreamFetching: AnyObject {
    /// Starts `request`; `completion` runs once with its response (or failure).
    func fetch(_ request: UpstreamRequest, completion: @escaping (UpstreamResponse) -> Void)
}

extension EventLoop: PollClock {
    public var nowMilliseconds: Int64 { MonotonicClock.milliseconds() }
    public func cancel(_ id: UInt64) { cancelTimer(id) }
}

extension UpstreamClient: UpstreamFetching {}
