import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

extension HTTPConnection {
    var address: ConnectionAddress { ConnectionAddress(state: state, fd: fd, id: id) }

    /// Holds `request` while cluster work runs: `start` begins it and is handed the function its
    /// reply goes to (callable from any thread); `then` runs on this loop with the reply, as if
    /// the request had just arrived. The reply of a wait that ended (its deadline, the
    /// connection's close) is dropped.
    func awaitCluster<Reply: Sendable>(_ request: HTTPRequestHead, start: (@escaping @Sendable (Reply) -> Void) -> Void,
                                       then: @escaping (Reply) -> Void) {
        let commandTimeout = state.context.cluster?.commandTimeout ?? 2000
        clusterWaits += 1
        let token = clusterWaits
        clusterContinuation = { reply in then(reply as! Reply) }
        install(ClusterWaitSession(request: request,
                                   expiresAt: MonotonicClock.milliseconds() + ClusterWaitSession.waitMilliseconds(commandTimeout: commandTimeout)))
        let address = address
        start { reply in address.reach { $0.clusterReplied(token: token, reply) } }
    }

    private func clusterReplied(token: Int, _ reply: some Sendable) {
        guard !closed, token == clusterWaits, session is ClusterWaitSession, let continuation = clusterContinuation else { return }
        clusterContinuation = nil
        uninstallSession()
        continuation(reply)
        if isPlainHTTP && lifecycle.isAnswering { resumeHTTP() } else { flush() }
    }

    /// Waits until every topic of `topics` that needs it caught up with the shared state
    /// (``Topic/needsCatchUp(since:)``), then runs `then` on this loop; false when none needed
    /// to (`then` is not called: the caller goes on at once).
    func awaitCatchUp(_ request: HTTPRequestHead, topics: [(Topic, Cursor?)], then: @escaping () -> Void) -> Bool {
        let behind = topics.filter { $0.0.needsCatchUp(since: $0.1) }
        guard !behind.isEmpty else { return false }
        awaitCluster(request, start: { (done: @escaping @Sendable (Bool) -> Void) in
            let remaining = CountDown(behind.count) { done(true) }
            for (topic, since) in behind { topic.catchUp(since: since) { remaining.arrive() } }
        }, then: { (_: Bool) in then() })
        return true
    }

    /// Subscribes a stream to `topic` once it caught up with the shared state, if it must first
    /// (the stream goes on meanwhile: other topics' changes, pings). True when deferred. An
    /// unsubscribe, or a new subscribe to the same topic, meanwhile cancels it.
    func attachWhenCaughtUp(_ topic: Topic, since: Cursor?) -> Bool {
        guard topic.needsCatchUp(since: since) else { return false }
        pendingAttaches[topic.key] = topic.name
        let address = address
        topic.catchUp(since: since) {
            address.reach { connection in
                guard !connection.closed, connection.pendingAttaches.removeValue(forKey: topic.key) != nil else { return }
                connection.attach(topic, since: since, sendBacklog: true)
                connection.flush()
            }
        }
        return true
    }

    /// Cluster mode: a `?ticket=` is taken from Redis (whichever node redeems it first wins)
    /// before the request is routed again with it; true when the request waits for that.
    func awaitTicket(_ request: HTTPRequestHead, body: [UInt8]) -> Bool {
        guard let cluster = state.context.cluster, state.generation.authenticator != nil,
              let ticket = Router.firstQueryValue(request.target, "ticket"), redeemedTicket?.ticket != ticket else { return false }
        awaitCluster(request, start: { cluster.takeTicket(ticket, completion: $0) }, then: { [unowned self] (value: [UInt8]?) in
            _ = state.context.tickets.redeem(ticket, now: unixMilliseconds())   // this node's own record of it, if any
            redeemedTicket = (ticket, value.flatMap(Principal.deserialized))
            route(request, body: body)
        })
        return true
    }
}

/// Calls `body` once `arrive()` was called `count` times (from any threads).
final class CountDown: Sendable {
    private let remaining: Locked<Int>
    private let body: @Sendable () -> Void

    init(_ count: Int, _ body: @escaping @Sendable () -> Void) {
        remaining = Locked(count)
        self.body = body
    }

    func arrive() {
        if remaining.withLock({ $0 -= 1; return $0 == 0 }) { body() }
    }
}
