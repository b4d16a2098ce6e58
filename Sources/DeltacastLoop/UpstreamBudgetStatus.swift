/// What one upstream origin's request budget is doing: the poller (DeltacastUpstream) reports
/// it once a second, and the server (DeltacastServer) shows it in `/metrics`, the status page
/// and `deltacast top`. It lives here because neither of those imports the other.
public struct UpstreamBudgetStatus: Sendable, Equatable {
    /// `scheme://host:port`.
    public var origin: String
    /// Configured requests per second.
    public var ratePerSecond: Double
    /// Requests per second allowed now (this node's share, lowered after `Retry-After`).
    public var allowedPerSecond: Double
    /// Requests started in the last whole second over this node's share of the rate.
    public var usedRatio: Double
    /// Polls that waited for the budget since the start.
    public var deferredTotal: Int
    /// Polls waiting for it now.
    public var waiting: Int
    /// Whether the origin asked to be spared (`Retry-After`) and that time has not passed.
    public var slowed: Bool

    public init(origin: String, ratePerSecond: Double, allowedPerSecond: Double, usedRatio: Double, deferredTotal: Int, waiting: Int, slowed: Bool) {
        self.origin = origin; self.ratePerSecond = ratePerSecond; self.allowedPerSecond = allowedPerSecond
        self.usedRatio = usedRatio; self.deferredTotal = deferredTotal; self.waiting = waiting; self.slowed = slowed
    }
}
