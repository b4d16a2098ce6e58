import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// A plain request waiting for cluster mode's Redis: a topic still loading, a cursor newer than
/// this node's state, a publish's commit, a ticket's store or take. The loop goes on serving
/// everyone else; the reply comes back to the connection on its loop
/// (``HTTPConnection/awaitCluster(_:start:then:)``). Bytes of a pipelined next request wait
/// meanwhile, as behind a held poll.
///
/// Its deadline is a backstop: every Redis command has its own timeout, after which the work
/// fails and the request is answered. Past the deadline the answer is 503 `unavailable`.
struct ClusterWaitSession: PushSession {
    let request: HTTPRequestHead
    let expiresAt: Int64

    /// How long a request may wait for Redis, milliseconds: four command timeouts (a commit that
    /// conflicts syncs and tries again) and a second.
    static func waitMilliseconds(commandTimeout: Int64) -> Int64 { 4 * commandTimeout + 1000 }

    /// Counted with the held requests.
    var transport: Transport { .longpoll }
    var name: String { "cluster-wait" }
    var streams: Bool { false }
    var deadline: Int64? { expiresAt }
    var framing: ChangeFraming { .answering }
    func event(_ payload: [UInt8]) -> [UInt8] { payload }

    var timedOut: RoutedResponse {
        .error(503, "unavailable", "the cluster's Redis did not answer in time; nothing was changed", headers: ["Retry-After": "1"])
    }

    func received(_ bytes: ArraySlice<UInt8>, now: Int64) -> [SessionAction] { [.keepForNextRequest(bytes)] }
    func tick(now: Int64, silent: Bool) -> [SessionAction] { now >= expiresAt ? [.answer(request, timedOut)] : [] }
    func subscriptionEnded(reason: String) -> [SessionAction] { [] }
    func end(code: UInt16, reason: String) -> [SessionAction] { [.answer(request, timedOut)] }
    func drain() -> [SessionAction] { [.answer(request, timedOut)] }
}

/// Where a reply made on another thread finds its connection again: the loop, the descriptor,
/// and the connection's id (a descriptor is reused once closed).
struct ConnectionAddress: Sendable {
    let state: LoopState
    let fd: Int32
    let id: Int

    /// Runs `body` on the connection's loop with the connection, if it is still open.
    func reach(_ body: @escaping @Sendable (HTTPConnection) -> Void) {
        let state = state, fd = fd, id = id
        state.loop.execute {
            guard let connection = state.connections[fd], connection.id == id else { return }
            body(connection)
        }
    }
}

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
