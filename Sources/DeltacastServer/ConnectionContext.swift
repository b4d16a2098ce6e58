import DeltacastCluster
import DeltacastHub
import Synchronization

/// What a connection and the requests it answers may ask of the server beyond their loop: the
/// topics, the cluster, the counters and logs, tickets and per-user limits, and the admin
/// answers. The one way from a connection to the server (``LoopState/context``), so what a
/// request can reach is this list, and "jump to definition" follows every call.
protocol ConnectionContext: AnyObject, Sendable {
    /// Topics and their changes.
    var hub: Hub! { get }
    /// Cluster mode's link to Redis, nil for one process.
    var cluster: Cluster? { get }
    /// Where poll topics get their state, nil when the server serves publish endpoints only.
    var topicSource: (any TopicSource)? { get }
    /// Process-wide counters for `/metrics`.
    var metrics: ServerMetrics { get }
    var log: EventLog { get }
    /// Outstanding single-use tickets.
    var tickets: TicketStore { get }
    /// Connections open now, every loop together.
    var openConnections: Atomic<Int> { get }
    /// Connection ids for logs, in accept order.
    var nextConnectionID: Atomic<Int> { get }

    /// Counts a push connection under its token's subject; false at
    /// `limits.max_connections_per_user`.
    func admitUser(_ subject: String) -> Bool
    func releaseUser(_ subject: String)
    /// `GET /deltacast/status`'s JSON.
    func statusJSON() -> [UInt8]
    /// `GET /deltacast/report`'s JSON.
    func reportJSON() -> [UInt8]
    /// `GET /metrics`'s text.
    func metricsText(draining: Bool) -> String
    /// `POST /deltacast/reload`: re-reads the configuration file and applies it.
    func reloadFromSource() -> Result<ReloadReport, ReloadError>
}

extension HTTPServer: ConnectionContext {}
