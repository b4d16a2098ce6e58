import DeltacastConfig
import DeltacastHub
import DeltacastWire

/// A request on a mirrored endpoint path (`GET /api/prices`), decided with no socket: refused,
/// upgraded to a WebSocket of that topic, an event stream of it, or a plain read
/// (``MirroredRead`` answers that once the topic's state is known).
struct TopicRequest {
    enum Reply {
        /// 401 or 403: the credential may not read the topic.
        case refuse(AccessDecision)
        /// Answer now: the transport asked for is disabled.
        case respond(status: Int, code: String, message: String)
        /// Upgrade to a WebSocket of this topic, keeping `credential` (anonymous unless the
        /// endpoint is `auth: token`: a passthrough token belongs to the upstream).
        case upgrade(keeping: Credential)
        /// An event stream of the topic, resuming after `since`.
        case stream(since: Cursor?)
        /// A plain GET.
        case read
    }

    let request: HTTPRequestHead
    let topicName: String

    /// The reply for a request whose credential `access` decided, to an endpoint that is
    /// `protected` (`auth: token`), under the proxy's `transports`.
    func reply(presented: Credential, access: AccessDecision, protected: Bool, transports: [Transport]) -> Reply {
        guard access == .allowed else { return .refuse(access) }
        if WebSocketHandshake.isUpgrade(request) {
            guard transports.contains(.websocket) else {
                return .respond(status: 403, code: "forbidden", message: "the websocket transport is disabled in this proxy's configuration (transports)")
            }
            return .upgrade(keeping: protected ? presented : .anonymous)
        }
        if Self.wantsEventStream(request) {
            guard transports.contains(.sse) else {
                return .respond(status: 406, code: "not_acceptable", message: "the sse transport is disabled in this proxy's configuration (transports)")
            }
            // `Last-Event-ID` (the browser's reconnect) first, then `?since=`.
            return .stream(since: (Router.resumeCursors(request).first ?? nil) ?? Router.firstQueryValue(request.target, "since").flatMap { Cursor($0) })
        }
        return .read
    }

    /// Whether `request` accepts `text/event-stream`.
    static func wantsEventStream(_ request: HTTPRequestHead) -> Bool {
        request.headers.tokens("Accept").contains { $0.lowercased().hasPrefix("text/event-stream") }
    }
}
