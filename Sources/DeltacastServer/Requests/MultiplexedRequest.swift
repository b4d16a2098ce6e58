import DeltacastConfig
import DeltacastHub
import DeltacastWire

/// A request on `/deltacast/ws`, `/deltacast/sse` or `/deltacast/poll` (one connection, many
/// topics), decided with no socket: the topics it names, each with its endpoint and cursor,
/// and the session it starts.
struct MultiplexedRequest {
    /// A topic the request names: the name, its endpoint's index (nil when no endpoint matches:
    /// the session answers it with an `error` event), and the cursor to resume after.
    typealias Requested = (name: String, endpoint: Int?, since: Cursor?)

    enum Reply {
        /// Answer now (no topic named).
        case respond(RoutedResponse)
        /// 401: a ticket or `token.` subprotocol that did not verify.
        case refuse(AccessDecision)
        /// Upgrade to a multiplexed WebSocket, which subscribes by message.
        case upgrade(Credential)
        /// Start an event stream of `topics`.
        case stream([Requested], Credential)
        /// Hold a long-poll on `topics` (or answer at once with what is newer than their cursors).
        case poll([Requested], Credential)
    }

    let request: HTTPRequestHead
    let transport: Transport

    /// The reply for a request presenting `presented()` (asked once, after the topics were
    /// found: a ticket is redeemed then), and the topics it reports drift for
    /// (`drift=TOPIC`: the client library resubscribes because its state of TOPIC did not match
    /// a digest; SSE and long-poll have no message to say it in). Only topics it also names
    /// count.
    func reply(credential presented: () -> Credential, router: Router) -> (Reply, drifted: [String]) {
        guard transport != .websocket else { return (.upgrade(presented()), []) }
        let named = Router.multiplexedTopics(request, transport: transport)
        guard !named.isEmpty else {
            return (.respond(.error(400, "bad_request", "name at least one topic: ?topic=/path")), [])
        }
        let drifted = Router.queryValues(request.target, "drift").filter { name in named.contains { $0.name == name } }
        let credential = presented()
        if case .invalid(let reason, explicit: true) = credential {
            return (.refuse(.unauthenticated("invalid token: \(reason)")), drifted)
        }
        let topics: [Requested] = named.map { name, since in
            if case .matched(let index, let topic, _) = router.matcher.match(name, parameters: false) {
                return (topic, index, since)
            }
            return (name, nil, since)
        }
        return (transport == .sse ? .stream(topics, credential) : .poll(topics, credential), drifted)
    }
}
