import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

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
            webSocket = WebSocketSession(kind: sessionKind, decoder: decoder, deflate: deflate, now: MonotonicClock.milliseconds(),
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
    func originAllowed(_ origin: String, host: String?) -> Bool {
        if configuration.cors.allowOriginHeader(for: origin) != nil { return true }
        guard let host else { return false }
        return origin == "http://" + host || origin == "https://" + host
    }

    func webSocketReceived(_ bytes: ArraySlice<UInt8>) {
        guard let session = webSocket else { return }
        session.decoder.append(bytes)
        // Anything from the peer proves it alive: the next ping waits a whole interval of silence.
        session.control.heard(now: deadlines.lastActivity)   // the read that brought these bytes set it
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
    func sendMessage(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        if let deflate = webSocket?.deflate, deflate.serverCompresses {
            let compressed = state.deflater(windowBits: deflate.serverMaxWindowBits).compress(payload)
            send(WebSocketFrame.encode(opcode, payload: compressed, compressed: true))
        } else {
            send(WebSocketFrame.encode(opcode, payload: payload))
        }
    }

    func clientMessage(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
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
        case .success(.drift(let name, let cursor)):
            reportDrift(topics: [name], cursor: cursor)
        }
    }

    func closeWebSocket(code: UInt16, reason: String) {
        if closeReason == nil { closeReason = (code == 1001 || code == 1000 || code == 1012 ? .debug : .info, Int(code), reason) }
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

}
