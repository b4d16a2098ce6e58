import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// An open WebSocket: frames decoded as they arrive, the control side (pings, pongs, the
/// closing handshake) in ``WebSocketProtocolState``, and messages turned into
/// ``ClientRequest``s. A `single` stream carries the topic of its path; a `multiplexed` one
/// (`/deltacast/ws`) what its `subscribe` messages ask for; `echo` (diagnostics) sends back
/// what it receives.
struct WebSocketSession: PushSession {
    enum Kind { case single, multiplexed, echo }
    let kind: Kind
    private(set) var decoder: WebSocketFrameDecoder
    let deflate: PerMessageDeflate.Parameters?
    /// Compresses messages to this client alone, when it agreed to compression (the loop's:
    /// with no context takeover, one serves every connection).
    let compressor: Deflater?
    /// Pings, pongs and the closing handshake.
    private(set) var control: WebSocketProtocolState
    let credentialHeaders: HTTPHeaders?

    init(kind: Kind, deflate: PerMessageDeflate.Parameters?, compressor: Deflater?, maximumMessage: Int, now: Int64, pingInterval: Int64, credentialHeaders: HTTPHeaders) {
        self.kind = kind
        self.decoder = WebSocketFrameDecoder(role: .server, maximumMessage: maximumMessage, deflate: deflate)
        self.deflate = deflate
        self.compressor = deflate?.serverCompresses == true ? compressor : nil
        self.control = WebSocketProtocolState(pingInterval: pingInterval, now: now)
        self.credentialHeaders = credentialHeaders
    }

    var transport: Transport { .websocket }
    var name: String { "webSocket" }

    /// Whether shared broadcast frames (compressed with a 15-bit window) may be sent compressed.
    var usesSharedDeflate: Bool { deflate?.serverMaxWindowBits == 15 }

    mutating func received(_ bytes: ArraySlice<UInt8>, now: Int64) -> [SessionAction] {
        decoder.append(bytes)
        // Anything from the peer proves it alive: the next ping waits a whole interval of silence.
        control.heard(now: now)
        var actions: [SessionAction] = []
        while true {
            let event: WebSocketEvent?
            do {
                event = try decoder.next()
            } catch {
                return actions + end(code: error.code, reason: error.reason)
            }
            guard let event else { return actions }
            switch control.received(event) {
            case .none, .ping, .close:
                break
            case .pong(let payload):
                actions.append(.send(WebSocketFrame.encode(.pong, payload: payload)))
            case .answerClose(let reply, let code):
                if reply { actions.append(.send(WebSocketFrame.encode(.close, payload: code.map { WebSocketFrame.closePayload(code: $0, reason: "") } ?? []))) }
                actions.append(.finish(nil))
                return actions
            case .message(let opcode, let payload):
                switch kind {
                case .echo:
                    actions.append(.send(message(opcode, payload)))
                case .single:
                    // A single-topic stream only sends, but it takes a renewal like any other.
                    if opcode == .text, case .success(.auth(let token)) = ClientMessage.parse(payload) {
                        actions.append(.request(.message(.auth(token: token))))
                    } else {
                        actions.append(.request(.ignored))
                    }
                case .multiplexed:
                    actions.append(.request(Self.request(opcode, payload)))
                }
            }
        }
    }

    /// What a message on `/deltacast/ws` asks for.
    static func request(_ opcode: WebSocketOpcode, _ payload: [UInt8]) -> ClientRequest {
        guard opcode == .text else {
            return .refused(DeltacastEvent.error(topic: nil, code: .badRequest, message: "binary messages are not part of deltacast.v1; send JSON text"))
        }
        switch ClientMessage.parse(payload) {
        case .failure(let error): return .refused(DeltacastEvent.error(topic: error.topic, code: .badRequest, message: error.message))
        case .success(let message): return .message(message)
        }
    }

    var framing: ChangeFraming { .webSocket(sharedDeflate: usesSharedDeflate) }

    func event(_ payload: [UInt8]) -> [UInt8] { message(.text, payload) }

    /// A message to this connection alone, compressed when agreed.
    func message(_ opcode: WebSocketOpcode, _ payload: [UInt8]) -> [UInt8] {
        guard let compressor else { return WebSocketFrame.encode(opcode, payload: payload) }
        return WebSocketFrame.encode(opcode, payload: compressor.compress(payload), compressed: true)
    }

    /// Pings a silent peer; closes (1008) after two unanswered pings.
    mutating func tick(now: Int64, silent: Bool) -> [SessionAction] {
        switch control.tick(now: now) {
        case .ping:
            return [.send(WebSocketFrame.encode(.ping, payload: []))]
        case .close(let code, let reason):
            return [.sendPastWatermark(WebSocketFrame.encode(.close, payload: WebSocketFrame.closePayload(code: code, reason: reason))),
                    .finish(CloseReason(level: .info, code: Int(code), text: reason))]
        default:
            return []
        }
    }

    /// Closing with our close frame out and the peer's not in yet: linger for it.
    func drained(closing: Bool) -> [SessionAction] {
        guard closing else { return [] }
        return control.closeSent && !control.peerSentClose ? [.linger] : [.close(nil)]
    }

    mutating func receivedWhileLingering(_ bytes: ArraySlice<UInt8>) -> Bool {
        decoder.append(bytes)
        do {
            while let event = try decoder.next() {
                if case .close = event { return true }
            }
            return false
        } catch {
            return true
        }
    }

    /// A single-topic stream ends with its topic (1008).
    mutating func subscriptionEnded(reason: String) -> [SessionAction] {
        kind == .single ? end(code: 1008, reason: reason) : []
    }

    /// Our close frame (unless one went out), then close once it is written.
    mutating func end(code: UInt16, reason: String) -> [SessionAction] {
        var actions: [SessionAction] = []
        if control.beginClose() {
            actions.append(.sendPastWatermark(WebSocketFrame.encode(.close, payload: WebSocketFrame.closePayload(code: code, reason: reason))))
        }
        let level: LogLevel = code == 1000 || code == 1001 || code == 1012 ? .debug : .info
        actions.append(.finish(CloseReason(level: level, code: Int(code), text: reason)))
        return actions
    }

    /// Service restart: reconnect, to the next process or another node.
    mutating func drain() -> [SessionAction] { end(code: 1012, reason: "service restart") }
}
