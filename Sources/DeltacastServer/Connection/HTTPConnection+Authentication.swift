import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

extension HTTPConnection {
    /// The credential `request` presents: `?ticket=` (redeemed: single use), then
    /// `Authorization: Bearer`, then (WebSocket upgrades) a `token.<jwt>` subprotocol entry.
    func credential(_ request: HTTPRequestHead) -> Credential {
        guard let authenticator = state.generation.authenticator else { return .anonymous }
        let now = unixMilliseconds()
        if let ticket = Router.firstQueryValue(request.target, "ticket") {
            // Cluster mode: Redis redeemed it before the request was routed (``awaitTicket``).
            let redeemed = state.context.cluster == nil ? state.context.tickets.redeem(ticket, now: now)
                : redeemedTicket?.ticket == ticket ? redeemedTicket?.principal : nil
            guard let principal = redeemed else {
                return .invalid("unknown, used or expired ticket (a ticket is good for one connection, within auth.ticket_ttl)", explicit: true)
            }
            if let expiresAt = principal.expiresAt, expiresAt <= now { return .invalid("the token behind this ticket has expired", explicit: true) }
            return .valid(principal)
        }
        var token: String?
        var explicit = false
        if let bearer = request.headers.bearerToken {
            token = bearer
        } else if let entry = request.headers.tokens("Sec-WebSocket-Protocol").first(where: { $0.hasPrefix("token.") }) {
            token = String(entry.dropFirst(6))
            explicit = true
        }
        guard let token else { return .anonymous }
        switch authenticator.authenticate(token, now: Double(now) / 1000) {
        case .success(let principal): return .valid(principal)
        case .failure(let failure): return .invalid(failure.reason, explicit: explicit)
        }
    }

    /// ``access(_:topicName:credential:)`` for the configuration's endpoint `index`: every poll
    /// and plain GET asks, and most endpoints never refuse, so the endpoint is copied (every
    /// field retained) only for an `auth: token` one.
    func access(endpoint index: Int, topicName: String, credential: Credential) -> AccessDecision {
        guard configuration.endpoints[index].auth == .token else { return .allowed }
        return access(configuration.endpoints[index], topicName: topicName, credential: credential)
    }

    /// Whether `credential` may read `topicName` of `endpoint` (only `auth: token` endpoints
    /// ask).
    func access(_ endpoint: Configuration.Endpoint, topicName: String, credential: Credential) -> AccessDecision {
        guard endpoint.auth == .token else { return .allowed }
        switch credential {
        case .anonymous:
            return .unauthenticated("\(topicName) needs a token: Authorization: Bearer, a token.<jwt> WebSocket subprotocol, an auth message, or ?ticket= from POST /deltacast/ticket")
        case .invalid(let reason, _):
            return .unauthenticated("invalid token: \(reason)")
        case .valid(let principal):
            if let expiresAt = principal.expiresAt, expiresAt <= unixMilliseconds() {
                return .unauthenticated("the token has expired; send a fresh one in an auth message")
            }
            // Scopes alone need no parameters: the topic is matched again only for a rule.
            guard endpoint.allow != nil else { return principal.access(endpoint, parameters: [:], query: "") }
            guard case .matched(_, _, let parameters) = state.generation.router.matcher.match(topicName) else {
                return .denied("\(topicName) matches no endpoint")
            }
            let query = topicName.firstIndex(of: "?").map { String(topicName[topicName.index(after: $0)...]) } ?? ""
            return principal.access(endpoint, parameters: parameters, query: query)
        }
    }

    /// The connection's own credential (a push stream's, renewable on a WebSocket).
    var heldCredential: Credential { principal.map(Credential.valid) ?? .anonymous }

    /// 401 (with `WWW-Authenticate`, RFC 6750) or 403 for a refused plain request or handshake.
    func refusalResponse(_ decision: AccessDecision) -> RoutedResponse {
        count(decision)
        switch decision {
        case .allowed:
            return .error(500, "internal", "allowed")
        case .unauthenticated(let reason):
            let challenge = reason.hasPrefix("invalid token") || reason.contains("expired")
                ? "Bearer realm=\"deltacast\", error=\"invalid_token\", error_description=\(String(decoding: jsonString(reason), as: UTF8.self))"
                : "Bearer realm=\"deltacast\""
            return .error(401, "unauthorized", reason, headers: ["WWW-Authenticate": challenge])
        case .denied(let reason):
            return .error(403, "forbidden", reason)
        }
    }

    /// An `error` event for a refused subscription.
    func refusalEvent(_ decision: AccessDecision, topic: String) -> [UInt8]? {
        count(decision)
        switch decision {
        case .allowed: return nil
        case .unauthenticated(let reason), .denied(let reason):
            return DeltacastEvent.error(topic: topic, code: .forbidden, message: reason)
        }
    }

    private func count(_ decision: AccessDecision) {
        switch decision {
        case .allowed: break
        case .unauthenticated: state.context.metrics.unauthenticated.add(1, ordering: .relaxed)
        case .denied: state.context.metrics.forbidden.add(1, ordering: .relaxed)
        }
    }

    /// Makes `credential` this push connection's, counted under its subject
    /// (`limits.max_connections_per_user`); false when the subject is at its limit.
    func bind(_ credential: Credential) -> Bool {
        guard case .valid(let principal) = credential else { return true }
        if self.principal?.subject != principal.subject {
            guard state.context.admitUser(principal.subject) else { return false }
            if let previous = self.principal { state.context.releaseUser(previous.subject) }
        }
        self.principal = principal
        return true
    }

    /// The 429 for a subject past `limits.max_connections_per_user`.
    func tooManyForUser(_ request: HTTPRequestHead) {
        state.context.metrics.refusedPerUser.add(1, ordering: .relaxed)
        var response = RoutedResponse.error(429, "too_many", "this subject holds limits.max_connections_per_user (\(state.configuration.limits.maxConnectionsPerUser)) push connections", headers: ["Retry-After": "5"])
        response.close = true
        finish(request, response)
    }

    /// `POST /deltacast/ticket`: trades the bearer token for a single-use ticket. 401 without a
    /// valid bearer token, 429 past `limits.ticket_rate`, 503 past `auth.max_tickets`.
    func issueTicket(_ request: HTTPRequestHead) {
        guard let bearer = request.headers.bearerToken, let authenticator = state.generation.authenticator else {
            return finish(request, refusalResponse(.unauthenticated("POST /deltacast/ticket needs Authorization: Bearer TOKEN")))
        }
        let now = unixMilliseconds()
        let principal: Principal
        switch authenticator.authenticate(bearer, now: Double(now) / 1000) {
        case .failure(let failure): return finish(request, refusalResponse(.unauthenticated("invalid token: \(failure.reason)")))
        case .success(let verified): principal = verified
        }
        if let wait = state.generation.ticketLimiter.take(principal.subject, now: MonotonicClock.milliseconds()) {
            state.context.metrics.rateLimited.add(1, ordering: .relaxed)
            return finish(request, .error(429, "too_many", "\(principal.subject) asked for tickets faster than limits.ticket_rate (\(state.configuration.limits.ticketRate))",
                                          headers: ["Retry-After": "\((wait + 999) / 1000)"]))
        }
        guard let ticket = state.context.tickets.issue(for: principal, now: now) else {
            return finish(request, .error(503, "too_many", "auth.max_tickets tickets are outstanding; try again shortly", headers: ["Retry-After": "1"]))
        }
        let seconds = state.configuration.auth.ticketTTL.components.seconds
        let answer = RoutedResponse(status: 200, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"],
                                    body: Array("{\"ticket\":\"\(ticket)\",\"expires_in\":\(seconds)}".utf8))
        guard let cluster = state.context.cluster else { return finish(request, answer) }
        // Stored in Redis too, so any node redeems it once; a ticket Redis did not take is
        // refused rather than handed out for other nodes to deny.
        let milliseconds = state.configuration.auth.ticketTTL.wholeMilliseconds
        awaitCluster(request, start: { cluster.storeTicket(ticket, principal.serialized, milliseconds: milliseconds, completion: $0) },
                     then: { [unowned self] (stored: Bool) in
            guard stored else {
                _ = state.context.tickets.redeem(ticket, now: unixMilliseconds())
                return finish(request, .error(503, "unavailable", "the ticket could not be stored in the cluster's Redis; try again shortly", headers: ["Retry-After": "1"]))
            }
            finish(request, answer)
        })
    }

    /// `limits.publish_rate` for the admin token: a 429 response when it is spent.
    func publishRefusal() -> RoutedResponse? {
        guard let wait = state.generation.publishLimiter.take("admin", now: MonotonicClock.milliseconds()) else { return nil }
        state.context.metrics.rateLimited.add(1, ordering: .relaxed)
        return .error(429, "too_many", "the admin token is past limits.publish_rate (\(state.configuration.limits.publishRate))",
                      headers: ["Retry-After": "\((wait + 999) / 1000)"])
    }

    /// A token's `exp` passed `auth.expiry_grace` ago (``ConnectionDeadlines``): each token-protected subscription ends
    /// with an `expired` error event and the stream ends (WebSocket close 4401), unless an
    /// `auth` message renewed the token in time.
    func expireToken() {
        var ended = 0
        for (key, subscription) in subscriptions.entries where subscription.topic.endpoint.auth == .token {
            sendEvent(DeltacastEvent.error(topic: subscription.topic.name, code: .expired, message: "the token expired and was not renewed within auth.expiry_grace"))
            detach(key)
            ended += 1
        }
        if let principal { state.context.releaseUser(principal.subject); self.principal = nil }
        // A connection that only reads public topics carries on, anonymous from now on.
        guard ended > 0, let actions = session?.end(code: 4401, reason: "token expired") else { return }
        perform(actions)
    }

    /// An `auth` message: verifies the fresh token and makes it the connection's. Every current
    /// subscription is checked again; those the new token may not read end with `forbidden`.
    /// Others carry on untouched.
    func renew(token: String) -> [UInt8]? {
        guard let authenticator = state.generation.authenticator else {
            return DeltacastEvent.error(topic: nil, code: .badRequest, message: "this proxy has no client authentication (auth); auth messages are not needed")
        }
        let principal: Principal
        switch authenticator.authenticate(token, now: Double(unixMilliseconds()) / 1000) {
        case .failure(let failure):
            return DeltacastEvent.error(topic: nil, code: .forbidden, message: "auth: invalid token: \(failure.reason); the previous token stays in force")
        case .success(let verified):
            principal = verified
        }
        guard bind(.valid(principal)) else {
            if let actions = session?.end(code: 1008, reason: "too many connections for this subject") { perform(actions) }
            return nil
        }
        for (key, subscription) in subscriptions.entries {
            let decision = access(subscription.topic.endpoint, topicName: subscription.topic.name, credential: .valid(principal))
            if let event = refusalEvent(decision, topic: subscription.topic.name) {
                sendEvent(event)
                detach(key)
            }
        }
        return nil
    }

    /// A reload changed the endpoints named in `endpoints`: each push subscription to one of
    /// them is checked against its new `allow` and `scopes`; a refused one ends with its
    /// `error` event (`forbidden`), and a single-topic stream ends with it. Others carry on.
    func recheckAccess(endpoints: Set<String>) {
        guard session?.streams == true else { return }
        let credential: Credential = principal.map { .valid($0) } ?? .anonymous
        var ended = 0
        for (key, subscription) in subscriptions.entries {
            let endpoint = subscription.topic.endpoint
            guard endpoints.contains(endpoint.path.text),
                  let event = refusalEvent(access(endpoint, topicName: subscription.topic.name, credential: credential), topic: subscription.topic.name)
            else { continue }
            sendEvent(event)
            detach(key)
            ended += 1
        }
        guard ended > 0, let actions = session?.subscriptionEnded(reason: "forbidden by the reloaded configuration") else { return }
        perform(actions)
        flush()
    }

    /// `limits.message_rate` on a WebSocket: false (and close 1008) when spent.
    func takeMessageToken() -> Bool {
        let (buckets, now) = clientBuckets()
        guard buckets.message.take(rate: state.configuration.limits.messageRate, now: now) == nil else {
            state.context.metrics.rateLimited.add(1, ordering: .relaxed)
            if let actions = session?.end(code: 1008, reason: "more than limits.message_rate messages") { perform(actions) }
            return false
        }
        return true
    }

    /// This connection's buckets (made on first use) and the time to take from them at.
    private func clientBuckets() -> (ClientBuckets, Int64) {
        let now = MonotonicClock.milliseconds()
        if let buckets { return (buckets, now) }
        let made = ClientBuckets(state.configuration.limits, now: now)
        buckets = made
        return (made, now)
    }

    /// `limits.subscribe_rate`: the `too_many` event when spent.
    func takeSubscribeToken(topic: String) -> [UInt8]? {
        let rate = state.configuration.limits.subscribeRate
        let (buckets, now) = clientBuckets()
        guard let wait = buckets.subscribe.take(rate: rate, now: now) else { return nil }
        state.context.metrics.rateLimited.add(1, ordering: .relaxed)
        return DeltacastEvent.error(topic: topic, code: .tooMany, message: "subscribes are limited to limits.subscribe_rate (\(rate)); retry in \(wait) ms")
    }
}
