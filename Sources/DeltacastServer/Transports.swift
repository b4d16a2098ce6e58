import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// One topic a connection receives, and the cursor of the last change it was sent.
struct Subscription {
    let topic: Topic
    /// The transport it counts under in the topic (nil: a plain request).
    var transport: Transport?
    var cursor: Cursor?
    /// Changes were dropped (slow consumer): one snapshot is owed once the socket drains.
    var needsResync = false
}

/// A held long-poll: what answers it and its timer. A class, so an idle connection carries
/// one pointer for it rather than a whole request head.
final class Hold {
    enum Kind {
        /// `GET /path` with `If-None-Match` and `Prefer: wait=N`: 200 on change, 304 on expiry.
        case mirrored
        /// A cold `GET /path` waiting for the topic's first state: 504 on expiry.
        case cold
        /// `GET /deltacast/poll`: a JSON array of events, 204 on expiry.
        case multiplexed
    }
    let kind: Kind
    let request: HTTPRequestHead
    var timer: UInt64?
    init(kind: Kind, request: HTTPRequestHead) { self.kind = kind; self.request = request }
}

/// A WebSocket's protocol state.
final class WebSocketSession {
    enum Kind { case single, multiplexed, echo }
    let kind: Kind
    var decoder: WebSocketFrameDecoder
    let deflate: PerMessageDeflate.Parameters?
    /// Pings, pongs and the closing handshake (a value type the connection drives).
    var control: WebSocketProtocolState
    /// A close frame was sent: nothing more goes out, the peer's close ends it.
    var closeSent: Bool { control.closeSent }
    /// The peer's close frame arrived.
    var peerSentClose: Bool { control.peerSentClose }
    /// The upgrade request's headers that passthrough endpoints forward (credentials for the
    /// topics this connection subscribes to later).
    let credentialHeaders: HTTPHeaders

    init(kind: Kind, decoder: WebSocketFrameDecoder, deflate: PerMessageDeflate.Parameters?, now: Int64, pingInterval: Int64, credentialHeaders: HTTPHeaders) {
        self.kind = kind
        self.credentialHeaders = credentialHeaders
        self.decoder = decoder
        self.deflate = deflate
        self.control = WebSocketProtocolState(pingInterval: pingInterval, now: now)
    }

    /// Whether shared broadcast frames (compressed with a 15-bit window) may be sent compressed.
    var usesSharedDeflate: Bool { deflate?.serverMaxWindowBits == 15 }
}

extension HTTPConnection {
    private var configuration: Configuration { state.configuration }

    // MARK: Mirrored paths

    func serveTopic(_ request: HTTPRequestHead, endpoint: Int, topicName: String) {
        // Checked on every plain GET and every stream, before anything about the topic shows.
        let presented = credential(request)
        let decision = access(configuration.endpoints[endpoint], topicName: topicName, credential: presented)
        guard decision == .allowed else { return finish(request, refusalResponse(decision)) }
        let protected = configuration.endpoints[endpoint].auth == .token
        if WebSocketHandshake.isUpgrade(request) {
            guard configuration.transports.contains(.websocket) else {
                return finish(request, .error(403, "forbidden", "the websocket transport is disabled in this proxy's configuration (transports)"))
            }
            return upgrade(request, kind: .single(endpoint: endpoint, topic: topicName), credential: protected ? presented : .anonymous)
        }
        if Self.wantsEventStream(request) {
            guard configuration.transports.contains(.sse) else {
                return finish(request, .error(406, "not_acceptable", "the sse transport is disabled in this proxy's configuration (transports)"))
            }
            if protected { guard bind(presented) else { return tooManyForUser(request) } }
            let since = lastEventID(request).first.flatMap { Cursor($0) } ?? Router.queryValues(request.target, "since").first.flatMap { Cursor($0) }
            return startSSE(request, topics: [(topicName, endpoint, since)], multiplexed: false, credential: presented)
        }
        guard let topic = hubTopic(topicName, endpoint: endpoint, request: request) else { return }
        guard let current = topic.current() else {
            if topic.endpoint.source == .publish {
                return finish(request, .error(404, "not_found", "nothing has been published to \(topicName) yet"))
            }
            if let problem = topic.upstreamProblem { return finish(request, Self.problemResponse(problem)) }
            // The first poll is under way (shared by every cold request); its own timeout ends
            // it first, so this hold's deadline is a backstop.
            return beginHold(.cold, request: request, topics: [(topic, nil)], milliseconds: configuration.upstream.timeout.wholeMilliseconds + 2000)
        }
        let etag = "\"\(current.cursor)\""
        if let match = request.headers["If-None-Match"], Self.etagMatches(match, etag) {
            if let wait = Self.preferWait(request), configuration.transports.contains(.longpoll) {
                return beginHold(.mirrored, request: request, topics: [(topic, current.cursor)],
                                 milliseconds: min(Int64(wait) * 1000, configuration.server.maxWait.wholeMilliseconds))
            }
            return finish(request, RoutedResponse(status: 304, headers: cacheHeaders(etag: etag, contentType: nil, stale: current.stale), body: []))
        }
        finish(request, RoutedResponse(status: 200, headers: cacheHeaders(etag: etag, contentType: current.contentType, stale: current.stale), body: current.body))
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

    private func cacheHeaders(etag: String, contentType: String?, stale: Bool) -> HTTPHeaders {
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

    private func lastEventID(_ request: HTTPRequestHead) -> [String] {
        let value = request.headers["Last-Event-ID"] ?? Router.queryValues(request.target, "last_event_id").first
        guard let value, !value.isEmpty else { return [] }
        return value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    }

    /// The credentials this connection holds for `endpoint` (`auth: passthrough`): from the
    /// request, or for a WebSocket from its upgrade request.
    private func credentials(endpoint: Int, request: HTTPRequestHead?) -> [(name: String, value: String)] {
        guard configuration.endpoints[endpoint].auth == .passthrough else { return [] }
        let headers = request?.headers ?? webSocket?.credentialHeaders ?? HTTPHeaders()
        return state.server.hub.credentials(endpoint: configuration.endpoints[endpoint]) { headers[$0] }
    }

    private func hubTopic(_ name: String, endpoint: Int, request: HTTPRequestHead?, credentialsFrom source: HTTPRequestHead? = nil) -> Topic? {
        do {
            return try state.server.hub.topic(named: name, endpoint: configuration.endpoints[endpoint],
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

    func publish(_ request: HTTPRequestHead, body: [UInt8], endpoint: Int, topicName: String) {
        guard configuration.endpoints[endpoint].source == .publish else {
            return finish(request, .error(409, "conflict", "\(topicName) is polled from the upstream (source: poll); only source: publish endpoints accept publishes"))
        }
        guard let topic = hubTopic(topicName, endpoint: endpoint, request: request) else { return }
        do {
            // `curl --data` labels bodies as a form; nobody publishes forms, so that means JSON.
            var contentType = request.headers["Content-Type"] ?? "application/json"
            if contentType.lowercased().hasPrefix("application/x-www-form-urlencoded") { contentType = "application/json" }
            let outcome = try topic.update(body: body, contentType: contentType)
            let (cursor, changed): (Cursor, Bool) = switch outcome {
            case .changed(let cursor): (cursor, true)
            case .unchanged(let cursor): (cursor, false)
            }
            var headers: HTTPHeaders = ["Content-Type": "application/json", "ETag": "\"\(cursor)\""]
            headers.add(name: "Cache-Control", value: "no-store")
            finish(request, RoutedResponse(status: 200, headers: headers,
                                           body: Array("{\"topic\":".utf8) + jsonString(topicName) + Array(",\"cursor\":\"\(cursor)\",\"changed\":\(changed)}".utf8)))
        } catch {
            finish(request, .error(400, "bad_request", "\(error); the state of \(topicName) is unchanged"))
        }
    }

    // MARK: Multiplexed transports

    func serveMultiplexed(_ request: HTTPRequestHead, transport: Transport) {
        switch transport {
        case .websocket:
            upgrade(request, kind: .multiplexed, credential: credential(request))
        case .sse, .longpoll:
            let names = Router.queryValues(request.target, "topic")
            guard !names.isEmpty else {
                return finish(request, .error(400, "bad_request", "name at least one topic: ?topic=/path"))
            }
            var sinces = Router.queryValues(request.target, "since")
            if transport == .sse { let resumed = lastEventID(request); if !resumed.isEmpty { sinces = resumed } }
            var topics: [(String, Int?, Cursor?)] = []
            for (offset, name) in names.enumerated() {
                let since = offset < sinces.count ? Cursor(sinces[offset]) : nil
                if case .matched(let index, let topic, _) = state.generation.router.matcher.match(name) {
                    topics.append((topic, index, since))
                } else {
                    topics.append((name, nil, since))
                }
            }
            let presented = credential(request)
            if case .invalid(let reason, explicit: true) = presented {
                return finish(request, refusalResponse(.unauthenticated("invalid token: \(reason)")))
            }
            if transport == .sse {
                guard bind(presented) else { return tooManyForUser(request) }
                return startSSE(request, topics: topics, multiplexed: true, credential: presented)
            }
            poll(request, topics: topics, credential: presented)
        }
    }

    /// An error event for a topic that cannot be subscribed, or nil when it can.
    private func refusal(_ name: String, endpoint: Int?, credential: Credential) -> [UInt8]? {
        if let endpoint {
            if subscriptions.count >= configuration.limits.maxTopicsPerConnection && !subscriptions.values.contains(where: { $0.topic.name == name }) {
                return DeltacastEvent.error(topic: name, code: .tooMany, message: "at most \(configuration.limits.maxTopicsPerConnection) topics per connection (limits.max_topics_per_connection)")
            }
            return refusalEvent(access(configuration.endpoints[endpoint], topicName: name, credential: credential), topic: name)
        }
        switch state.generation.router.matcher.match(name) {
        case .badParameter(let parameter, let pattern):
            return DeltacastEvent.error(topic: name, code: .badRequest, message: "invalid value for parameter '\(parameter)'; it must match \(pattern)")
        default:
            return DeltacastEvent.error(topic: name, code: .notFound, message: "no endpoint is configured at \(name)")
        }
    }

    private func poll(_ request: HTTPRequestHead, topics requested: [(String, Int?, Cursor?)], credential: Credential) {
        var events: [[UInt8]] = []
        var watched: [(Topic, Cursor?)] = []
        for (name, endpoint, since) in requested.prefix(configuration.limits.maxTopicsPerConnection) {
            if let error = refusal(name, endpoint: endpoint, credential: credential) { events.append(error); continue }
            guard let topic = hubTopic(name, endpoint: endpoint!, request: nil, credentialsFrom: request) else {
                events.append(DeltacastEvent.error(topic: name, code: .tooMany, message: "the proxy holds limits.max_topics topics, all watched"))
                continue
            }
            let problem = topic.upstreamProblem
            if let problem, problem.kind == .forbidden {
                events.append(DeltacastEvent.error(topic: name, code: .forbidden, message: problem.message))
                continue
            }
            if let changes = topic.changes(since: since) {
                events += changes.map(\.event)
                if let problem { events.append(DeltacastEvent.status(topic: name, error: (problem.http, problem.message))) }
            }
            watched.append((topic, since))
        }
        if requested.count > configuration.limits.maxTopicsPerConnection {
            events.append(DeltacastEvent.error(topic: nil, code: .tooMany, message: "at most \(configuration.limits.maxTopicsPerConnection) topics per request (limits.max_topics_per_connection)"))
        }
        if !events.isEmpty || watched.isEmpty {
            return finish(request, pollResponse(events))
        }
        let wait = Router.queryValues(request.target, "wait").first.flatMap { Int($0) } ?? 25
        beginHold(.multiplexed, request: request, topics: watched, milliseconds: min(Int64(max(0, wait)) * 1000, configuration.server.maxWait.wholeMilliseconds))
    }

    private func pollResponse(_ events: [[UInt8]]) -> RoutedResponse {
        state.counters.delivered(transport: .longpoll, count: events.count, bytes: events.reduce(0) { $0 + $1.count })
        var body: [UInt8] = [0x5B]
        for (index, event) in events.enumerated() {
            if index > 0 { body.append(0x2C) }
            body += event
        }
        body.append(0x5D)
        return RoutedResponse(status: 200, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: body)
    }

    // MARK: Holding (long-poll)

    private func beginHold(_ kind: Hold.Kind, request: HTTPRequestHead, topics: [(Topic, Cursor?)], milliseconds: Int64) {
        mode = .held
        for (topic, since) in topics { attach(topic, since: since, sendBacklog: false) }
        let hold = Hold(kind: kind, request: request)
        hold.timer = state.loop.schedule(afterMilliseconds: milliseconds) { [weak self] in self?.expireHold() }
        self.hold = hold
    }

    /// Answers a held request when its wait ends (or the server shuts down).
    func expireHold() {
        guard let hold else { return }
        let response: RoutedResponse = switch hold.kind {
        case .mirrored: RoutedResponse(status: 304, headers: ["Cache-Control": "no-cache"], body: [])
        case .cold: .error(504, "upstream_timeout", "the upstream did not provide a first state in time")
        case .multiplexed: RoutedResponse(status: 204, headers: ["Cache-Control": "no-store"], body: [])
        }
        release(hold, with: response)
    }

    private func release(_ hold: Hold, with response: RoutedResponse) {
        if let timer = hold.timer { state.loop.cancelTimer(timer) }
        self.hold = nil
        detachAll()
        finish(hold.request, response)
        flush()
        if !closed && !closeAfterFlush { resumeHTTP() }
    }

    /// A held request's topic changed: answer it.
    private func answerHold(_ hold: Hold, change: Change) {
        switch hold.kind {
        case .mirrored, .cold:
            guard let topic = subscriptions.values.first?.topic else { return }
            guard let current = topic.current() else {
                // No good state: a cold GET gets the first poll's failure at once.
                if hold.kind == .cold, change.cursor == nil, let problem = topic.upstreamProblem {
                    release(hold, with: Self.problemResponse(problem))
                }
                return
            }
            let etag = "\"\(current.cursor)\""
            release(hold, with: RoutedResponse(status: 200, headers: cacheHeaders(etag: etag, contentType: current.contentType, stale: current.stale), body: current.body))
        case .multiplexed:
            var events: [[UInt8]] = []
            for subscription in subscriptions.values {
                if let changes = subscription.topic.changes(since: subscription.cursor) { events += changes.map(\.event) }
            }
            // Status and error events are not in the journal: they travel with what woke us.
            if change.cursor == nil { events.append(change.event) }
            release(hold, with: pollResponse(events))
        }
    }

    // MARK: SSE

    /// Answers `request` with an open event stream (close-delimited) and its `retry:` hint;
    /// false when the connection is gone.
    func beginEventStream(_ request: HTTPRequestHead, multiplexed: Bool) -> Bool {
        var headers: HTTPHeaders = ["Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "close"]
        addCORS(request, to: &headers)
        logAccess(request, status: 200, bytes: 0)
        guard send(HTTPResponseWriter.head(status: 200, headers: headers, date: state.dateValue())) else { return false }
        mode = .sse
        sseMultiplexed = multiplexed
        send(ServerSentEvents.retry(milliseconds: state.sseRetryMilliseconds))
        return true
    }

    /// Whether the request asks for `text/event-stream`.
    static func wantsEventStream(_ request: HTTPRequestHead) -> Bool {
        request.headers.tokens("Accept").contains { $0.lowercased().hasPrefix("text/event-stream") }
    }

    private func startSSE(_ request: HTTPRequestHead, topics: [(String, Int?, Cursor?)], multiplexed: Bool, credential: Credential) {
        guard beginEventStream(request, multiplexed: multiplexed) else { return }
        for (name, endpoint, since) in topics {
            if let error = refusal(name, endpoint: endpoint, credential: credential) {
                send(ServerSentEvents.event(event: "error", data: error))
                continue
            }
            guard let topic = hubTopic(name, endpoint: endpoint!, request: nil, credentialsFrom: request) else {
                send(ServerSentEvents.event(event: "error", data: DeltacastEvent.error(topic: name, code: .tooMany, message: "the proxy holds limits.max_topics topics, all watched")))
                continue
            }
            if !sseTopics.contains(topic.key) { sseTopics.append(topic.key) }
            attach(topic, since: since, sendBacklog: true)
        }
        flush()
    }

    private func sseFrame(_ change: Change) -> [UInt8] {
        guard sseMultiplexed else { return change.sseEvent }
        guard change.cursor != nil else { return change.sseBody }
        let ids = sseTopics.map { subscriptions[$0]?.cursor?.description ?? "" }.joined(separator: ",")
        return Array("id: \(ids)\n".utf8) + change.sseBody
    }

    // MARK: WebSocket

    enum UpgradeKind { case single(endpoint: Int, topic: String), multiplexed, echo }

    func upgrade(_ request: HTTPRequestHead, kind: UpgradeKind, credential: Credential = .anonymous) {
        if let origin = request.headers["Origin"], !originAllowed(origin, host: request.headers["Host"]) {
            return finish(request, .error(403, "forbidden", "origin \(origin) is not in cors.origins"))
        }
        if case .invalid(let reason, explicit: true) = credential {
            return finish(request, refusalResponse(.unauthenticated("invalid token: \(reason)")))
        }
        let subprotocols: [String] = if case .echo = kind { [] } else { ["deltacast.v1"] }
        switch WebSocketHandshake.negotiate(request, subprotocols: subprotocols) {
        case .reject(let status, let headers, let message):
            var response = RoutedResponse.error(status, status == 426 ? "upgrade_required" : "bad_request", message, headers: headers)
            response.close = true
            finish(request, response)
        case .accept(let headers, let deflate, _):
            guard bind(credential) else { return tooManyForUser(request) }
            logAccess(request, status: 101, bytes: 0)
            guard send(HTTPResponseWriter.head(status: 101, headers: headers)) else { return }
            let sessionKind: WebSocketSession.Kind
            switch kind {
            case .single: sessionKind = .single
            case .multiplexed: sessionKind = .multiplexed
            case .echo: sessionKind = .echo
            }
            let decoder = WebSocketFrameDecoder(role: .server, maximumMessage: configuration.limits.maxMessage, deflate: deflate)
            var credentialHeaders = HTTPHeaders()
            for name in state.generation.passthroughHeaders { for value in request.headers.values(name) { credentialHeaders.add(name: name, value: value) } }
            webSocket = WebSocketSession(kind: sessionKind, decoder: decoder, deflate: deflate, now: EventLoop.monotonicMilliseconds(),
                                         pingInterval: state.webSocketPingMilliseconds,
                                         credentialHeaders: credentialHeaders)
            mode = .webSocket
            if case .single(let endpoint, let name) = kind, let topic = hubTopic(name, endpoint: endpoint, request: nil) {
                attach(topic, since: Router.queryValues(request.target, "since").first.flatMap { Cursor($0) }, sendBacklog: true)
            }
            let early = parser.takeBuffered()
            if !early.isEmpty { webSocketReceived(early[...]) }
            flush()
        }
    }

    /// Same origin (the Origin's host is the Host header), `*`, or listed in `cors.origins`.
    private func originAllowed(_ origin: String, host: String?) -> Bool {
        if configuration.cors.allowOriginHeader(for: origin) != nil { return true }
        guard let host else { return false }
        return origin == "http://" + host || origin == "https://" + host
    }

    func webSocketReceived(_ bytes: ArraySlice<UInt8>) {
        guard let session = webSocket else { return }
        session.decoder.append(bytes)
        // Anything from the peer proves it alive: the next ping waits a whole interval of silence.
        session.control.heard(now: lastActivity)   // the read that brought these bytes set it
        while !closed, webSocket != nil {
            let event: WebSocketEvent?
            do {
                event = try session.decoder.next()
            } catch {
                closeWebSocket(code: error.code, reason: error.reason)
                return
            }
            guard let event else { break }
            switch session.control.received(event) {
            case .none, .ping, .close:
                break
            case .pong(let payload):
                send(WebSocketFrame.encode(.pong, payload: payload))
            case .answerClose(let reply, let code):
                if reply { send(WebSocketFrame.encode(.close, payload: code.map { WebSocketFrame.closePayload(code: $0, reason: "") } ?? [])) }
                closeAfterFlush = true
                flush()
                return
            case .message(let opcode, let payload):
                if session.kind != .echo && !takeMessageToken() { return }
                switch session.kind {
                case .echo: sendMessage(opcode, payload)
                case .single:
                    // A single-topic stream only sends, but it takes a renewal like any other.
                    if opcode == .text, case .success(.auth(let token)) = ClientMessage.parse(payload), let error = renew(token: token) {
                        sendMessage(.text, error)
                    }
                case .multiplexed: clientMessage(opcode, payload)
                }
            }
        }
        flush()
    }

    /// A message to this connection alone, compressed when agreed (per-loop compressor).
    private func sendMessage(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        if let deflate = webSocket?.deflate, deflate.serverCompresses {
            let compressed = state.deflater(windowBits: deflate.serverMaxWindowBits).compress(payload)
            send(WebSocketFrame.encode(opcode, payload: compressed, compressed: true))
        } else {
            send(WebSocketFrame.encode(opcode, payload: payload))
        }
    }

    private func clientMessage(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        guard opcode == .text else {
            return sendMessage(.text, DeltacastEvent.error(topic: nil, code: .badRequest, message: "binary messages are not part of deltacast.v1; send JSON text"))
        }
        switch ClientMessage.parse(payload) {
        case .failure(let error):
            sendMessage(.text, DeltacastEvent.error(topic: error.topic, code: .badRequest, message: error.message))
        case .success(.subscribe(let name, let since)):
            var endpoint: Int?
            var topicName = name
            if case .matched(let index, let normalised, _) = state.generation.router.matcher.match(name) { endpoint = index; topicName = normalised }
            if let error = refusal(topicName, endpoint: endpoint, credential: heldCredential) { return sendMessage(.text, error) }
            if endpoint != nil, let error = takeSubscribeToken(topic: topicName) { return sendMessage(.text, error) }
            guard let topic = hubTopic(topicName, endpoint: endpoint!, request: nil) else {
                return sendMessage(.text, DeltacastEvent.error(topic: name, code: .tooMany, message: "the proxy holds limits.max_topics topics, all watched"))
            }
            detach(named: topicName)
            attach(topic, since: since, sendBacklog: true)
        case .success(.unsubscribe(let name)):
            var topicName = name
            if case .matched(_, let normalised, _) = state.generation.router.matcher.match(name) { topicName = normalised }
            detach(named: topicName)
        case .success(.auth(let token)):
            if let error = renew(token: token) { sendMessage(.text, error) }
        }
    }

    func closeWebSocket(code: UInt16, reason: String) {
        if closeReason == nil { closeReason = (code == 1001 || code == 1000 ? .debug : .info, Int(code), reason) }
        guard let session = webSocket else { close(); return }
        if session.control.beginClose() {
            // The close frame must go out even past the high watermark (it is tiny).
            _ = queue.enqueue(WebSocketFrame.encode(.close, payload: WebSocketFrame.closePayload(code: code, reason: reason)))
        }
        closeAfterFlush = true
        flush()
    }

    func webSocketHeartbeat(now: Int64) {
        guard let session = webSocket else { return }
        switch session.control.tick(now: now) {
        case .ping:
            send(WebSocketFrame.encode(.ping, payload: []))
            flush()
        case .close(let code, let reason):
            if closeReason == nil { closeReason = (.info, Int(code), reason) }
            _ = queue.enqueue(WebSocketFrame.encode(.close, payload: WebSocketFrame.closePayload(code: code, reason: reason)))
            closeAfterFlush = true
            flush()
        default:
            break
        }
    }

    // MARK: Subscriptions and delivery

    /// Subscribes to `topic` on this loop; sends what the subscriber missed when `sendBacklog`.
    private func attach(_ topic: Topic, since: Cursor?, sendBacklog: Bool) {
        let transport = mode.transport
        let (backlog, cursor) = topic.subscribe(loop: state.index, since: since, transport: transport)
        state.addSubscriber(self, topic: topic.key)
        if since != nil {
            if backlog.first?.kind == .snapshot { state.counters.resumesBySnapshot.add(1, ordering: .relaxed) } else { state.counters.resumesFromJournal.add(1, ordering: .relaxed) }
        }
        let log = state.server.log
        if log.enabled(.debug) {
            let resume = since == nil ? "none" : backlog.first?.kind == .snapshot ? "snapshot" : "journal"
            log.log(.debug, "subscribe", ["conn": .int(id), "topic": .string(topic.name), "mode": .string("\(mode)"), "resume": .string(resume)])
        }
        // The client's cursor counts only when it is a state of this topic's history; the
        // backlog (patches from it, or a snapshot) then brings it up to date.
        var held: Cursor?
        if let since, let cursor, since.epoch == cursor.epoch, since.seq <= cursor.seq { held = since }
        subscriptions[topic.key] = Subscription(topic: topic, transport: transport, cursor: held)
        if sendBacklog {
            for change in backlog {
                push(change)
                if change.kind == .error { return endSubscription(topic.key) }
            }
        }
    }

    /// Ends one subscription (its `error` event already queued).
    func detachSubscription(_ key: String) { detach(key) }

    private func detach(_ key: String) {
        guard let subscription = subscriptions.removeValue(forKey: key) else { return }
        subscription.topic.unsubscribe(loop: state.index, transport: subscription.transport)
        state.removeSubscriber(self, topic: key)
    }

    /// Detaches the subscription to the topic clients know as `name`.
    private func detach(named name: String) {
        for (key, subscription) in subscriptions where subscription.topic.name == name { detach(key) }
    }

    /// The upstream refused this connection's credentials for a topic (the `error` event is
    /// queued): the subscription ends; a single-topic stream ends with it.
    private func endSubscription(_ key: String, reason: String = "forbidden by the upstream") {
        detach(key)
        switch mode {
        case .sse where !sseMultiplexed:
            closeAfterFlush = true
        case .webSocket where webSocket?.kind == .single:
            closeWebSocket(code: 1008, reason: reason)
        default:
            break
        }
    }

    private func detachAll() {
        for name in Array(subscriptions.keys) { detach(name) }
    }

    /// A change of a topic this connection receives (called by the loop).
    func deliver(_ change: Change) {
        guard !closed, let subscription = subscriptions[change.key] else { return }
        if let cursor = change.cursor, let held = subscription.cursor, cursor.seq <= held.seq { return }
        if mode == .held {
            if let hold { answerHold(hold, change: change) }
            return
        }
        push(change)
        if change.kind == .error {
            // An error from a topic the hub no longer holds: a reload removed its endpoint.
            let removed = !state.server.hub.holds(subscription.topic)
            endSubscription(change.key, reason: removed ? "endpoint removed by a configuration reload" : "forbidden by the upstream")
            flush()
            return
        }
        state.flushSoon(self)
    }

    /// Queues a change in this connection's framing, unless it is conflating.
    private func push(_ change: Change) {
        guard var subscription = subscriptions[change.key] else { return }
        if change.kind == .patch, subscription.cursor != change.base { subscription.needsResync = true }
        if subscription.needsResync || conflating || queue.isAboveHighWatermark {
            // Slow consumer: drop, and owe one snapshot once the socket drains.
            if change.cursor != nil { subscription.needsResync = true }
            if !conflating {
                state.counters.conflations.add(1, ordering: .relaxed)
                state.server.log.log(.info, "conflation", ["conn": .int(id), "topic": .string(change.topic), "pending_bytes": .int(queue.pendingBytes)])
            }
            conflating = true
            subscriptions[change.key] = subscription
            return
        }
        let previous = subscription.cursor
        if let cursor = change.cursor { subscription.cursor = cursor }
        subscriptions[change.key] = subscription
        let bytes: [UInt8]
        switch mode {
        case .webSocket: bytes = change.webSocketFrame(deflate: webSocket?.usesSharedDeflate ?? false)
        case .sse: bytes = sseFrame(change)
        case .http, .held: return
        }
        if queue.enqueue(bytes) {
            state.counters.delivered(transport: mode == .webSocket ? .websocket : .sse, bytes: bytes.count)
        } else {
            // Past the hard limit: conflate like above rather than close.
            subscription.cursor = previous
            if change.cursor != nil { subscription.needsResync = true }
            subscriptions[change.key] = subscription
            conflating = true
        }
    }

    /// After a slow consumer's queue drained: one fresh snapshot per topic that lost changes.
    func resync() {
        conflating = false
        for (key, subscription) in subscriptions where subscription.needsResync {
            var fresh = subscription
            fresh.needsResync = false
            fresh.cursor = nil
            subscriptions[key] = fresh
            for change in subscription.topic.changes(since: nil) ?? [] { push(change) }
        }
    }

    /// No progress writing for `limits.slow_consumer_timeout`: close (WebSocket: 1008).
    func slowConsumerTimedOut() {
        state.counters.slowConsumerCloses.add(1, ordering: .relaxed)
        closeReason = (.warn, mode == .webSocket ? 1008 : nil, "slow consumer: no write progress for limits.slow_consumer_timeout")
        if mode == .webSocket, let session = webSocket, session.control.beginClose() {
            _ = queue.enqueue(WebSocketFrame.encode(.close, payload: WebSocketFrame.closePayload(code: 1008, reason: "slow consumer: no progress")))
            _ = writeQueue()
        }
        close()
    }
}

extension HTTPConnection {
    /// `POST /deltacast/refresh?topic=...`: re-polls the topic now (every credential's topic of
    /// that name under passthrough). 202 with how many topics were nudged; 404 when none is
    /// polled now (nobody watches it); 409 for a `source: publish` endpoint.
    func refresh(_ request: HTTPRequestHead, endpoint: Int, topicName: String) {
        guard state.configuration.endpoints[endpoint].source == .poll else {
            return finish(request, .error(409, "conflict", "\(topicName) is a source: publish endpoint; it has no upstream to re-poll"))
        }
        let count = state.server.topicSource?.refresh(name: topicName) ?? 0
        guard count > 0 else {
            return finish(request, .error(404, "not_found", "\(topicName) is not being polled now (no subscriber, no recent GET)"))
        }
        let body = Array("{\"topic\":".utf8) + jsonString(topicName) + Array(",\"refreshed\":\(count)}".utf8)
        finish(request, RoutedResponse(status: 202, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: body))
    }
}

extension HTTPConnection {
    /// `GET /deltacast/status`: the status JSON; with `Accept: text/event-stream`, an SSE
    /// stream of it once a second (`event: status`), for the status page.
    func serveStatus(_ request: HTTPRequestHead) {
        let json = state.server.statusJSON()
        guard Self.wantsEventStream(request) else {
            return finish(request, RoutedResponse(status: 200, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: json))
        }
        guard beginEventStream(request, multiplexed: true) else { return }
        send(ServerSentEvents.event(event: "status", data: json))
        flush()
        scheduleStatusTick()
    }

    private func scheduleStatusTick() {
        state.loop.schedule(afterMilliseconds: 1000) { [weak self] in
            guard let self, !self.closed else { return }
            self.statusTick(self.state.server.statusJSON())
        }
    }

    private func statusTick(_ json: [UInt8]) {
        guard !closed, mode == .sse else { return }
        // Skipped while the previous one is still queued: a slow page never piles them up.
        if queue.isEmpty { send(ServerSentEvents.event(event: "status", data: json)) }
        flush()
        scheduleStatusTick()
    }
}
