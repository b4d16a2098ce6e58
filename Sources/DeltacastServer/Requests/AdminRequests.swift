import DeltacastConfig
import DeltacastHub
import DeltacastWire

/// `POST /deltacast/publish?topic=...` (admin token checked by the router), decided with no
/// socket: which publishes a topic takes, the body's type, and the answer to its outcome.
struct PublishRequest {
    /// The topic published to.
    let topicName: String
    /// Its endpoint's `source`: only `publish` endpoints take publishes.
    let source: Source
    /// The `Content-Type` the state is served with afterwards.
    let contentType: String

    init(_ request: HTTPRequestHead, topicName: String, source: Source) {
        self.topicName = topicName
        self.source = source
        // `curl --data` labels bodies as a form; nobody publishes forms, so that means JSON.
        let declared = request.headers["Content-Type"] ?? "application/json"
        contentType = declared.lowercased().hasPrefix("application/x-www-form-urlencoded") ? "application/json" : declared
    }

    /// 409 for a polled endpoint; nil when the body goes to the topic (``response(_:)`` then
    /// answers its outcome).
    func refusal() -> RoutedResponse? {
        guard source == .publish else {
            return .error(409, "conflict", "\(topicName) is polled from the upstream (source: poll); only source: publish endpoints accept publishes")
        }
        return nil
    }

    /// A publish's answer: 200 with the cursor and whether anything changed, 503 when the
    /// cluster could not commit it, 400 for a body that is not JSON.
    func response(_ outcome: Result<Topic.UpdateOutcome, Topic.UpdateError>) -> RoutedResponse {
        switch outcome {
        case .success(let update):
            let (cursor, changed): (Cursor, Bool) = switch update {
            case .changed(let cursor): (cursor, true)
            case .unchanged(let cursor): (cursor, false)
            }
            var headers: HTTPHeaders = ["Content-Type": "application/json", "ETag": "\"\(cursor)\""]
            headers.add(name: "Cache-Control", value: "no-store")
            return RoutedResponse(status: 200, headers: headers,
                                  body: Array("{\"topic\":".utf8) + jsonString(topicName) + Array(",\"cursor\":\"\(cursor)\",\"changed\":\(changed)}".utf8))
        case .failure(.clusterUnavailable(let reason)):
            return .error(503, "unavailable", "\(reason); the state of \(topicName) is unchanged", headers: ["Retry-After": "1"])
        case .failure(let error):
            return .error(400, "bad_request", "\(error); the state of \(topicName) is unchanged")
        }
    }
}

/// `POST /deltacast/refresh?topic=...`: re-polls the topic now (every credential's topic of
/// that name under passthrough), decided with no socket.
struct RefreshRequest {
    let topicName: String
    let source: Source

    /// 202 with how many topics `refresh` nudged; 404 when none is polled now (nobody watches
    /// it); 409 for a `source: publish` endpoint, which has no upstream (`refresh` is not asked).
    func response(refresh: (String) -> Int) -> RoutedResponse {
        guard source == .poll else {
            return .error(409, "conflict", "\(topicName) is a source: publish endpoint; it has no upstream to re-poll")
        }
        let count = refresh(topicName)
        guard count > 0 else {
            return .error(404, "not_found", "\(topicName) is not being polled now (no subscriber, no recent GET)")
        }
        let body = Array("{\"topic\":".utf8) + jsonString(topicName) + Array(",\"refreshed\":\(count)}".utf8)
        return RoutedResponse(status: 202, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: body)
    }
}

/// `POST /deltacast/ticket`: trades the bearer token for a single-use ticket, decided with no
/// socket.
struct TicketRequest {
    /// What the connection does with the request.
    enum Reply {
        /// Refuse it: no valid bearer token (401, counted as unauthenticated).
        case refuse(AccessDecision)
        /// Past `limits.ticket_rate` (429, counted as rate limited).
        case rateLimited(RoutedResponse)
        /// Answer now: the ticket, or 503 when `auth.max_tickets` are outstanding.
        case respond(RoutedResponse)
        /// Cluster mode: store `ticket` in Redis for `milliseconds`, then answer `answer`
        /// (or ``unstored`` when Redis did not take it).
        case store(ticket: String, principal: Principal, milliseconds: Int64, answer: RoutedResponse)
    }

    let request: HTTPRequestHead

    /// 401 without a valid bearer token, 429 past `limits.ticket_rate` (`limiter`, on the
    /// monotonic `clock`), 503 past `auth.max_tickets`; else the ticket from `tickets`, good
    /// for `auth.ticket_ttl`.
    func reply(access: TopicAccess, configuration: Configuration, limiter: KeyedRateLimiter, clock: Int64,
               tickets: TicketStore, clustered: Bool) -> Reply {
        guard let bearer = request.headers.bearerToken, let authenticator = access.authenticator else {
            return .refuse(.unauthenticated("POST /deltacast/ticket needs Authorization: Bearer TOKEN"))
        }
        let principal: Principal
        switch authenticator.authenticate(bearer, now: Double(access.now) / 1000) {
        case .failure(let failure): return .refuse(.unauthenticated("invalid token: \(failure.reason)"))
        case .success(let verified): principal = verified
        }
        if let wait = limiter.take(principal.subject, now: clock) {
            return .rateLimited(.error(429, "too_many", "\(principal.subject) asked for tickets faster than limits.ticket_rate (\(configuration.limits.ticketRate))",
                                   headers: ["Retry-After": "\((wait + 999) / 1000)"]))
        }
        guard let ticket = tickets.issue(for: principal, now: access.now) else {
            return .respond(.error(503, "too_many", "auth.max_tickets tickets are outstanding; try again shortly", headers: ["Retry-After": "1"]))
        }
        let seconds = configuration.auth.ticketTTL.components.seconds
        let answer = RoutedResponse(status: 200, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"],
                                    body: Array("{\"ticket\":\"\(ticket)\",\"expires_in\":\(seconds)}".utf8))
        guard clustered else { return .respond(answer) }
        // Stored in Redis too, so any node redeems it once; a ticket Redis did not take is
        // refused rather than handed out for other nodes to deny.
        return .store(ticket: ticket, principal: principal, milliseconds: configuration.auth.ticketTTL.wholeMilliseconds, answer: answer)
    }

    /// The answer when the cluster's Redis did not store the ticket.
    static let unstored = RoutedResponse.error(503, "unavailable", "the ticket could not be stored in the cluster's Redis; try again shortly",
                                               headers: ["Retry-After": "1"])
}
