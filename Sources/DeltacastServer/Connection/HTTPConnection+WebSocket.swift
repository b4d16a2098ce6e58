import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

extension HTTPConnection {
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
            var credentialHeaders = HTTPHeaders()
            for name in state.generation.passthroughHeaders { for value in request.headers.values(name) { credentialHeaders.add(name: name, value: value) } }
            let compressor = deflate.map { state.deflater(windowBits: $0.serverMaxWindowBits) }
            install(WebSocketSession(kind: sessionKind, deflate: deflate, compressor: compressor, maximumMessage: configuration.limits.maxMessage,
                                     now: MonotonicClock.milliseconds(), pingInterval: state.webSocketPingMilliseconds, credentialHeaders: credentialHeaders))
            if case .single(let endpoint, let name) = kind, let topic = hubTopic(name, endpoint: endpoint, request: nil) {
                let since = Router.firstQueryValue(request.target, "since").flatMap { Cursor($0) }
                if !attachWhenCaughtUp(topic, since: since) { attach(topic, since: since, sendBacklog: true) }
            }
            let early = requests.takeBuffered()
            if !early.isEmpty { sessionReceived(early[...]) }
            flush()
        }
    }

    /// Same origin (the Origin's host is the Host header), `*`, or listed in `cors.origins`.
    func originAllowed(_ origin: String, host: String?) -> Bool {
        if configuration.cors.allowOriginHeader(for: origin) != nil { return true }
        guard let host else { return false }
        return origin == "http://" + host || origin == "https://" + host
    }

    /// A client's request over its stream, after `limits.message_rate` (close 1008 when spent).
    func perform(_ request: ClientRequest) {
        guard takeMessageToken() else { return }
        switch request {
        case .ignored:
            break
        case .refused(let event):
            sendEvent(event)
        case .message(.subscribe(let name, let since)):
            var endpoint: Int?
            var topicName = name
            if case .matched(let index, let normalised, _) = state.generation.router.matcher.match(name) { endpoint = index; topicName = normalised }
            if let error = refusal(topicName, endpoint: endpoint, credential: heldCredential) { return sendEvent(error) }
            if endpoint != nil, let error = takeSubscribeToken(topic: topicName) { return sendEvent(error) }
            guard let topic = hubTopic(topicName, endpoint: endpoint!, request: nil) else {
                return sendEvent(DeltacastEvent.error(topic: name, code: .tooMany, message: "the proxy holds limits.max_topics topics, all watched"))
            }
            detach(named: topicName)
            if !attachWhenCaughtUp(topic, since: since) { attach(topic, since: since, sendBacklog: true) }
        case .message(.unsubscribe(let name)):
            var topicName = name
            if case .matched(_, let normalised, _) = state.generation.router.matcher.match(name) { topicName = normalised }
            detach(named: topicName)
        case .message(.auth(let token)):
            if let error = renew(token: token) { sendEvent(error) }
        case .message(.drift(let name, let cursor)):
            reportDrift(topics: [name], cursor: cursor)
        }
    }
}
