import DeltacastBase
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

/// Hears how one upstream request ended: a polled topic's entry in the ``Poller``.
public protocol UpstreamResponseHandling: AnyObject {
    /// Runs once, on the fetcher's thread, with the response or why there is none.
    func upstreamResponded(_ response: UpstreamResponse)
}

/// Upstream requests as the ``Poller`` sees them: libcurl in production, a scripted double in
/// tests. The handler runs on the poller's thread.
public protocol UpstreamFetching: AnyObject {
    /// Starts `request`; `handler` hears once its response (or failure).
    func fetch(_ request: UpstreamRequest, replyTo handler: any UpstreamResponseHandling)
}

extension UpstreamFetching {
    /// Starts `request`; `completion` runs once with its response (or failure).
    public func fetch(_ request: UpstreamRequest, completion: @escaping (UpstreamResponse) -> Void) {
        fetch(request, replyTo: ResponseClosure(completion))
    }
}

/// A closure as a response handler, for requests off the polling path (tokens, `discover`).
private final class ResponseClosure: UpstreamResponseHandling {
    let completion: (UpstreamResponse) -> Void
    init(_ completion: @escaping (UpstreamResponse) -> Void) { self.completion = completion }
    func upstreamResponded(_ response: UpstreamResponse) { completion(response) }
}

extension EventLoop: PollClock {
    public var nowMilliseconds: Int64 { MonotonicClock.milliseconds() }
    public func cancel(_ id: UInt64) { cancelTimer(id) }
}

extension UpstreamClient: UpstreamFetching {}

/// Credentials for the requests of an origin that the proxy itself holds (OAuth2 client
/// credentials): the ``Poller`` asks for them before each request it sends there.
public protocol UpstreamAuthorizing: AnyObject {
    /// Calls `completion` on the poller's thread with the `Authorization` value to send, or why
    /// there is none (the poll then fails with that reason and backs off). Never a secret in it.
    func authorization(_ completion: @escaping (Result<String, UpstreamFailure>) -> Void)
    /// A request sent with `value` was answered `401`: that credential is no good any more.
    func rejected(_ value: String)
}

/// A polled topic as the ``Poller`` sees it: whether it is still wanted, whether this node may
/// poll it now, how many watch it, and the judge of each poll's result. Everything runs on the
/// poller's thread.
public protocol PollTarget: AnyObject {
    /// False once nobody needs the topic any more: the poller stops polling it.
    var isWanted: Bool { get }
    /// False while another node polls it (cluster mode): no request is sent at that due time.
    var mayPoll: Bool { get }
    /// Who watches it: with a budget or an adaptive interval, more watchers poll sooner.
    var watchers: Int { get }
    /// Judges one poll's result: the topic's new state, or a problem to back off from.
    func judge(_ result: PollResult) -> PollVerdict
}

/// A ``PollTarget`` made of closures.
final class ClosurePollTarget: PollTarget {
    private let wanted: () -> Bool
    private let permitted: () -> Bool
    private let counted: () -> Int
    private let handler: (PollResult) -> PollVerdict

    init(wanted: @escaping () -> Bool, permitted: @escaping () -> Bool, watchers: @escaping () -> Int,
         handler: @escaping (PollResult) -> PollVerdict) {
        self.wanted = wanted
        self.permitted = permitted
        counted = watchers
        self.handler = handler
    }

    var isWanted: Bool { wanted() }
    var mayPoll: Bool { permitted() }
    var watchers: Int { counted() }
    func judge(_ result: PollResult) -> PollVerdict { handler(result) }
}
