import DeltacastHub
import DeltacastWire

/// What a plain `GET` of a mirrored topic means: from the request and the topic's state, one
/// reply. A current state is `200` with its cursor as `ETag`, or `304` when the client's
/// `If-None-Match` names it (held until the next change with `Prefer: wait=N`); no state yet
/// is the first poll's failure, a wait for that poll, or `404` for a publish endpoint with
/// nothing published. No socket, no server: the connection does what the reply says.
struct MirroredRead {
    /// The topic as the request finds it.
    enum TopicState {
        /// Its current state (``Topic/current()``).
        case current(cursor: Cursor, body: [UInt8], contentType: String, stale: Bool)
        /// No good state: the upstream failed (or refuses this credential).
        case failing(UpstreamProblem)
        /// No state yet, and the first poll is under way.
        case firstPollPending
        /// A `source: publish` topic nothing was published to.
        case unpublished
    }

    /// What the connection does.
    enum Reply {
        case respond(RoutedResponse)
        /// Hold the request until the topic moves from `cursor` (nil: until its first state),
        /// for at most `milliseconds`.
        case hold(HoldSession.Kind, cursor: Cursor?, milliseconds: Int64)
    }

    /// The settings a read depends on.
    struct Settings {
        /// Whether the long-poll transport is enabled (`Prefer: wait` holds only then).
        var longPoll: Bool
        /// `server.max_wait`, milliseconds.
        var maxWait: Int64
        /// How long a cold GET waits for the first poll: `upstream.timeout` and 2 s (the poll's
        /// own timeout ends it first; this is a backstop).
        var firstPollWait: Int64
    }

    let request: HTTPRequestHead
    let topicName: String
    let settings: Settings

    /// The reply, and for the migration report the body bytes sent and the full body a direct
    /// poll would have fetched (nil: no upstream request avoided is counted).
    func reply(_ state: TopicState) -> (Reply, counted: (sent: Int, full: Int)?) {
        switch state {
        case .unpublished:
            return (.respond(.error(404, "not_found", "nothing has been published to \(topicName) yet")), nil)
        case .failing(let problem):
            return (.respond(Self.problemResponse(problem)), nil)
        case .firstPollPending:
            return (.hold(.cold, cursor: nil, milliseconds: settings.firstPollWait), (0, 0))
        case .current(let cursor, let body, let contentType, let stale):
            let etag = "\"\(cursor)\""
            let notModified = request.headers["If-None-Match"].map { Self.etagMatches($0, etag) } ?? false
            let wait = notModified && settings.longPoll ? Self.preferWait(request) : nil
            // A request its client would have sent the upstream: a held one counts, its answer's bytes do not.
            let counted = (sent: notModified ? 0 : body.count, full: wait != nil ? 0 : body.count)
            if notModified {
                if let wait {
                    return (.hold(.mirrored, cursor: cursor, milliseconds: HoldSession.wait(seconds: wait, maximum: settings.maxWait)), counted)
                }
                return (.respond(RoutedResponse(status: 304, headers: Self.cacheHeaders(etag: etag, contentType: nil, stale: stale), body: [])), counted)
            }
            return (.respond(RoutedResponse(status: 200, headers: Self.cacheHeaders(etag: etag, contentType: contentType, stale: stale), body: body)), counted)
        }
    }

    /// The answer to a plain GET while the upstream gives no good state.
    static func problemResponse(_ problem: UpstreamProblem) -> RoutedResponse {
        let code = switch problem.kind {
        case .forbidden: "forbidden"
        case .timeout: "upstream_timeout"
        default: "upstream_error"
        }
        return .error(problem.responseStatus, code, problem.message, headers: problem.kind == .forbidden ? [:] : ["Retry-After": "1"])
    }

    static func cacheHeaders(etag: String, contentType: String?, stale: Bool) -> HTTPHeaders {
        var headers = HTTPHeaders()
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        headers.add(name: "ETag", value: etag)
        headers.add(name: "Cache-Control", value: "no-cache")
        if stale { headers.add(name: "Deltacast-Stale", value: "true") }
        return headers
    }

    /// Whether an `If-None-Match` list names `etag` (weak comparison, or `*`).
    static func etagMatches(_ header: String, _ etag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            var text = candidate.trimmingOWS
            if text == "*" { return true }
            if text.hasPrefix("W/") { text.removeFirst(2) }
            return text == etag
        }
    }

    /// `Prefer: wait=N` (RFC 7240), in seconds.
    static func preferWait(_ request: HTTPRequestHead) -> Int? {
        for token in request.headers.values("Prefer").flatMap({ $0.split(separator: ",") }) {
            let parts = token.split(separator: "=", maxSplits: 1).map { $0.trimmingOWS }
            if parts.count == 2, parts[0].lowercased() == "wait", let seconds = Int(parts[1]), seconds >= 0 { return seconds }
        }
        return nil
    }
}
