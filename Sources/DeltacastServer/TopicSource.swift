public import DeltacastConfig
public import DeltacastHub
public import DeltacastLoop

/// Where the topics of `source: poll` endpoints get their state. The server does not know how:
/// the executable plugs in the upstream poller (`deltacast serve` composes Hub, poller and
/// server), and a server without a source serves publish endpoints only.
public protocol TopicSource: AnyObject, Sendable {
    /// Starts (before the server accepts connections); `hub` holds the topics, `reports`
    /// takes poll outcomes for `/metrics` and log lines.
    func start(hub: Hub, reports: ServerReports) throws(SystemError)
    /// A topic was created: poll it if its endpoint polls. Called from any thread.
    func topicCreated(_ topic: Topic)
    /// A subscriber with no cursor came to `topic`, whose endpoint has an adaptive interval:
    /// poll it soon (a topic that drifted to its maximum interval may hold an old state).
    /// Called from any thread.
    func subscriberArrived(_ topic: Topic)
    /// Re-polls every topic named `name` now (one per credential under passthrough); returns
    /// how many there are (`POST /deltacast/refresh`).
    func refresh(name: String) -> Int
    /// Cluster mode: this node came to own `topic`: poll it now, for a full body (what an
    /// earlier poll here fetched may never have been committed).
    func ownershipGained(_ topic: Topic)
    /// A reload put `configuration` in force: `ended` topics stop, `changed` ones take their
    /// endpoint's new settings.
    func reconfigure(_ configuration: Configuration, ended: [Topic], changed: [Topic])
    /// Stops; blocks until it has.
    func stop()
}

/// What a topic source reports back to the server: poll outcomes (for `/metrics`) and log lines.
public struct ServerReports: Sendable {
    let metrics: ServerMetrics
    /// The server's structured log.
    public let log: EventLog
    let savings: SavingsLedger

    /// One request sent to the upstream for `topic`; `answered` when it brought a body or a `304`.
    public func recordUpstreamRequest(_ topic: Topic, answered: Bool) {
        topic.savings.upstreamRequest(answered: answered)
    }

    /// A poll changed `topic`'s state; the change happened at most `boundMilliseconds` before it
    /// was committed (nil for a poll with no poll before it).
    public func recordChange(_ topic: Topic, boundMilliseconds: Int64?) {
        topic.savings.changed()
        if let boundMilliseconds { savings.detected(endpoint: topic.pattern, milliseconds: boundMilliseconds) }
    }

    /// A change-index read of `endpoint`'s index (an upstream request no topic owns).
    public func recordIndexRead(endpoint: String) {
        savings.indexRead(endpoint: endpoint)
    }

    /// Records one poll: its endpoint pattern, outcome label and duration.
    public func recordPoll(endpoint: String, outcome: String, seconds: Double) {
        metrics.recordPoll(endpoint: endpoint, outcome: outcome, seconds: seconds)
    }

    /// Records how far a request budget stretched a poll's interval (the time since the poll
    /// before over the configured interval; 1 when it kept it).
    public func recordStretch(endpoint: String, stretch: Double) {
        metrics.stretch.withLock { table in
            // A moving average over about the last 20 polls of the endpoint.
            table[endpoint] = table[endpoint].map { $0 + (stretch - $0) / 20 } ?? stretch
        }
    }

    /// One read of an endpoint's change index: how many topics it triggered, or why it failed
    /// (`status`, `garbage`, `cursor_backwards`, `transport`).
    public func recordChangeIndex(endpoint: String, triggered: Int, failure: String?) {
        metrics.changeIndex.withLock { table in
            var entry = table[endpoint] ?? (reads: 0, triggered: 0, failures: [:])
            entry.reads += 1
            entry.triggered += triggered
            if let failure { entry.failures[failure, default: 0] += 1 }
            table[endpoint] = entry
        }
    }

    /// The request budgets' state, once a second.
    public func recordBudgets(_ budgets: [UpstreamBudgetStatus]) {
        metrics.budgets.withLock { $0 = budgets }
    }
}
