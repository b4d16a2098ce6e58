import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// Plain requests about topics: mirrored GETs (200/304, or a held wait), publishes, refreshes,
/// and the routing of the multiplexed transports to their sessions.
extension HTTPConnection {
    var configuration: Configuration { state.configuration }

    // MARK: Mirrored paths

    func serveTopic(_ request: HTTPRequestHead, endpoint: Int, topicName: String, caughtUp: Bool = false) {
        // Checked on every plain GET and every stream, before anything about the topic shows.
        let presented = credential(request)
        let kind = TopicRequest(request: request, topicName: topicName)
            .reply(presented: presented, access: access(endpoint: endpoint, topicName: topicName, credential: presented),
                   protected: configuration.endpoints[endpoint].auth == .token, transports: configuration.transports)
        switch kind {
        case .refuse(let decision):
            return finish(request, refusalResponse(decision))
        case .respond(let status, let code, let message):
            return finish(request, .error(status, code, message))
        case .upgrade(let credential):
            return upgrade(request, kind: .single(endpoint: endpoint, topic: topicName), credential: credential)
        case .stream(let since):
            if configuration.endpoints[endpoint].auth == .token { guard bind(presented) else { return tooManyForUser(request) } }
            return startSSE(request, topics: [(topicName, endpoint, since)], multiplexed: false, credential: presented)
        case .read:
            break
        }
        guard let topic = hubTopic(topicName, endpoint: endpoint, request: request) else { return }
        // Cluster mode: a topic this node meets now is loading from Redis; the request waits
        // for it (the loop does not).
        if !caughtUp, awaitCatchUp(request, topics: [(topic, nil)], then: { [unowned self] in
            serveTopic(request, endpoint: endpoint, topicName: topicName, caughtUp: true)
        }) { return }
        let state: MirroredRead.TopicState
        if let current = topic.current() {
            state = .current(cursor: current.cursor, body: current.body, contentType: current.contentType, stale: current.stale)
        } else if topic.endpoint.source == .publish {
            state = .unpublished
        } else if let problem = topic.upstreamProblem {
            state = .failing(problem)
        } else {
            state = .firstPollPending
        }
        let read = MirroredRead(request: request, topicName: topicName, settings: .init(
            longPoll: configuration.transports.contains(.longpoll), maxWait: configuration.server.maxWait.wholeMilliseconds,
            firstPollWait: configuration.upstream.timeout.wholeMilliseconds + 2000))
        let (reply, counted) = read.reply(state)
        if let counted { topic.savings.mirroredGet(sent: counted.sent, full: counted.full) }
        switch reply {
        case .respond(let response):
            finish(request, response)
        case .hold(let kind, let cursor, let milliseconds):
            beginHold(kind, request: request, topics: [(topic, cursor)], milliseconds: milliseconds)
        }
    }

    /// The credentials this connection holds for `endpoint` (`auth: passthrough`): from the
    /// request, or for a WebSocket from its upgrade request.
    func credentials(endpoint: Int, request: HTTPRequestHead?) -> [(name: String, value: String)] {
        guard configuration.endpoints[endpoint].auth == .passthrough else { return [] }
        let headers = request?.headers ?? session?.credentialHeaders ?? HTTPHeaders()
        return state.context.hub.credentials(endpoint: configuration.endpoints[endpoint]) { headers[$0] }
    }

    func hubTopic(_ name: String, endpoint: Int, request: HTTPRequestHead?, credentialsFrom source: HTTPRequestHead? = nil) -> Topic? {
        do {
            return try state.context.hub.topic(named: name, path: configuration.endpoints[endpoint].path.text,
                                              credentials: credentials(endpoint: endpoint, request: source ?? request))
        } catch .endpointRemoved(let path) {
            if let request { finish(request, .error(404, "not_found", "the endpoint \(path) was removed by a configuration reload")) }
            return nil
        } catch {
            if let request {
                finish(request, .error(503, "too_many", "the proxy holds limits.max_topics topics, all watched", headers: ["Retry-After": "5"]))
            }
            return nil
        }
    }

    // MARK: Publish

    /// `POST /deltacast/publish` (``PublishRequest``); in cluster mode answered when the commit is.
    func publish(_ request: HTTPRequestHead, body: [UInt8], endpoint: Int, topicName: String) {
        let publish = PublishRequest(request, topicName: topicName, source: configuration.endpoints[endpoint].source)
        if let refusal = publish.refusal() { return finish(request, refusal) }
        guard let topic = hubTopic(topicName, endpoint: endpoint, request: request) else { return }
        guard state.context.cluster != nil else {
            if case .finished(let outcome) = topic.update(body: body, contentType: publish.contentType, whenCommitted: { _ in }) {
                finish(request, publish.response(outcome))
            }
            return
        }
        // The loop goes on while the cluster commits.
        awaitCluster(request, start: { done in
            if case .finished(let outcome) = topic.update(body: body, contentType: publish.contentType, whenCommitted: done) { done(outcome) }
        }, then: { [unowned self] (outcome: Result<Topic.UpdateOutcome, Topic.UpdateError>) in
            finish(request, publish.response(outcome))
        })
    }

    // MARK: Multiplexed transports

    func serveMultiplexed(_ request: HTTPRequestHead, transport: Transport) {
        let (reply, drifted) = MultiplexedRequest(request: request, transport: transport)
            .reply(credential: { credential(request) }, router: state.generation.router)
        if !drifted.isEmpty { reportDrift(topics: drifted, cursor: nil) }
        switch reply {
        case .respond(let response):
            finish(request, response)
        case .refuse(let decision):
            finish(request, refusalResponse(decision))
        case .upgrade(let credential):
            upgrade(request, kind: .multiplexed, credential: credential)
        case .stream(let topics, let credential):
            guard bind(credential) else { return tooManyForUser(request) }
            startSSE(request, topics: topics, multiplexed: true, credential: credential)
        case .poll(let topics, let credential):
            poll(request, topics: topics, credential: credential)
        }
    }

    /// A client's report that its state of `topics` did not match a digest: counted and
    /// logged (at most one count per topic named in the request).
    func reportDrift(topics: [String], cursor: Cursor?) {
        state.counters.clientDrifts.add(topics.count, ordering: .relaxed)
        for topic in topics {
            state.context.log.log(.warn, "client_drift", ["conn": .int(id), "topic": .string(topic), "cursor": .string(cursor?.description ?? "")])
        }
    }

    /// An error event for a topic that cannot be subscribed, or nil when it can.
    func refusal(_ name: String, endpoint: Int?, credential: Credential) -> [UInt8]? {
        if let endpoint {
            if subscriptions.count + pendingAttaches.count >= configuration.limits.maxTopicsPerConnection && !subscriptions.contains(topicNamed: name)
                && !pendingAttaches.values.contains(name) {
                return DeltacastEvent.error(topic: name, code: .tooMany, message: "at most \(configuration.limits.maxTopicsPerConnection) topics per connection (limits.max_topics_per_connection)")
            }
            return refusalEvent(access(endpoint: endpoint, topicName: name, credential: credential), topic: name)
        }
        switch state.generation.router.matcher.match(name) {
        case .badParameter(let parameter, let pattern):
            return DeltacastEvent.error(topic: name, code: .badRequest, message: "invalid value for parameter '\(parameter)'; it must match \(pattern)")
        case .unsafeParameter(let parameter, let reason):
            return DeltacastEvent.error(topic: name, code: .badRequest, message: "parameter '\(parameter)' holds \(reason); it is not forwarded upstream")
        default:
            return DeltacastEvent.error(topic: name, code: .notFound, message: "no endpoint is configured at \(name)")
        }
    }

}

extension HTTPConnection {
    /// `POST /deltacast/refresh` (``RefreshRequest``).
    func refresh(_ request: HTTPRequestHead, endpoint: Int, topicName: String) {
        let refresh = RefreshRequest(topicName: topicName, source: configuration.endpoints[endpoint].source)
        finish(request, refresh.response { state.context.topicSource?.refresh(name: $0) ?? 0 })
    }
}
