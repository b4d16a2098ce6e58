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
