import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// An open `text/event-stream` (SSE): one topic on a mirrored path, or many on
/// `/deltacast/sse` (their cursors listed together in each `id:`). The client has nothing to
/// say; the stream is silent only with nothing pending, and then gets a heartbeat comment.
struct EventStreamSession: PushSession {
    /// `/deltacast/sse` (and the status stream): the stream outlives any one subscription.
    let multiplexed: Bool
    /// `server.sse_retry`, ms: the `retry:` hint it ends with at shutdown.
    let retryMilliseconds: Int

    var transport: Transport { .sse }
    var name: String { "sse" }
    var listsCursors: Bool { true }
    var readsWhileOutputBacksUp: Bool { true }

    /// Reading only notices when the client leaves.
    mutating func received(_ bytes: ArraySlice<UInt8>, now: Int64) -> [SessionAction] { [] }

    var framing: ChangeFraming { .eventStream(multiplexed: multiplexed) }

    func event(_ payload: [UInt8]) -> [UInt8] { ServerSentEvents.event(event: "error", data: payload) }

    mutating func tick(now: Int64, silent: Bool) -> [SessionAction] {
        silent ? [.send(ServerSentEvents.comment("heartbeat"))] : []
    }

    /// A single-topic stream ends with its topic.
    mutating func subscriptionEnded(reason: String) -> [SessionAction] {
        multiplexed ? [] : [.finish(CloseReason(level: .info, text: reason))]
    }

    mutating func end(code: UInt16, reason: String) -> [SessionAction] { [.finish(CloseReason(level: .info, text: reason))] }

    /// A last `retry:`, so clients come back at the pace asked for.
    mutating func drain() -> [SessionAction] {
        [.send(ServerSentEvents.retry(milliseconds: retryMilliseconds)), .finish(nil)]
    }
}
