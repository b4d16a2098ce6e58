import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

extension HTTPConnection {
    /// The access questions of this connection's generation, at the wall clock's time now.
    var topicAccess: TopicAccess {
        TopicAccess(authenticator: state.generation.authenticator, router: state.generation.router, now: unixMilliseconds())
    }

    /// The credential `request` presents (``TopicAccess/credential(_:redeem:)``).
    func credential(_ request: HTTPRequestHead) -> Credential {
        guard state.generation.authenticator != nil else { return .anonymous }
        let access = topicAccess
        return access.credential(request) { ticket in
            // Cluster mode: Redis redeemed it before the request was routed (``awaitTicket``).
            state.context.cluster == nil ? state.context.tickets.redeem(ticket, now: access.now)
                : redeemedTicket?.ticket == ticket ? redeemedTicket?.principal : nil
        }
    }

    /// ``access(_:topicName:credential:)`` for the configuration's endpoint `index`: every poll
    /// and plain GET asks, and most endpoints never refuse, so the endpoint is copied (every
    /// field retained) only for an `auth: token` one.
    func access(endpoint index: Int, topicName: String, credential: Credential) -> AccessDecision {
        guard configuration.endpoints[index].auth == .token else { return .allowed }
        return access(configuration.endpoints[index], topicName: topicName, credential: credential)
    }

    /// Whether `credential` may read `topicName` of `endpoint` (``TopicAccess/decision(_:topicName:credential:)``).
    func access(_ endpoint: Configuration.Endpoint, topicName: String, credential: Credential) -> AccessDecision {
        guard endpoint.auth == .token else { return .allowed }
        return topicAccess.decision(endpoint, topicName: topicName, credential: credential)
    }

    /// The connection's own credential (a push stream's, renewable on a WebSocket).
    var heldCredential: Credential { principal.map(Credential.valid) ?? .anonymous }

    /// 401 or 403 for a refused plain request or handshake, counted.
    func refusalResponse(_ decision: AccessDecision) -> RoutedResponse {
        count(decision)
        return TopicAccess.response(decision)
    }

    /// An `error` event for a refused subscription, counted; nil when it is allowed.
    func refusalEvent(_ decision: AccessDecision, topic: String) -> [UInt8]? {
        count(decision)
        return TopicAccess.event(decision, topic: topic)
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

    /// `POST /deltacast/ticket` (``TicketRequest``); in cluster mode answered once Redis
    /// stored the ticket.
    func issueTicket(_ request: HTTPRequestHead) {
        let reply = TicketRequest(request: request).reply(access: topicAccess, configuration: configuration, limiter: state.generation.ticketLimiter,
                                                          clock: MonotonicClock.milliseconds(), tickets: state.context.tickets,
                                                          clustered: state.context.cluster != nil)
        switch reply {
        case .refuse(let decision):
            finish(request, refusalResponse(decision))
        case .rateLimited(let response):
            state.context.metrics.rateLimited.add(1, ordering: .relaxed)
            finish(request, response)
        case .respond(let response):
            finish(request, response)
        case .store(let ticket, let principal, let milliseconds, let answer):
            guard let cluster = state.context.cluster else { return finish(request, answer) }
            awaitCluster(request, start: { cluster.storeTicket(ticket, principal.serialized, milliseconds: milliseconds, completion: $0) },
                         then: { [unowned self] (stored: Bool) in
                guard stored else {
                    _ = state.context.tickets.redeem(ticket, now: unixMilliseconds())
                    return finish(request, TicketRequest.unstored)
                }
                finish(request, answer)
            })
        }
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
        let principal: Principal
        switch topicAccess.renewal(token) {
        case .failure(let refusal): return refusal.bytes
        case .success(let verified): principal = verified
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
