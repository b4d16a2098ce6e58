import DeltacastWire

/// The control side of one WebSocket (RFC 6455 §5.5 and §7): answering pings, pinging a silent
/// peer, the closing handshake, and which data messages still count. A value type with no
/// socket and no clock: the connection feeds it events and the time, and performs the
/// ``Action`` it returns (STYLE.md #2).
struct WebSocketProtocolState {
    /// What the connection must do.
    enum Action: Equatable {
        /// Send a pong with this payload.
        case pong([UInt8])
        /// Send a ping (the peer was silent for a whole interval).
        case ping
        /// Hand this data message to the session.
        case message(WebSocketOpcode, [UInt8])
        /// The peer closed: send our close frame back when `reply` (echoing its code, or an
        /// empty payload when it gave none), then end once everything is flushed.
        case answerClose(reply: Bool, code: UInt16?)
        /// Close with this code and reason (the peer left two pings unanswered).
        case close(code: UInt16, reason: String)
        /// Nothing.
        case none
    }

    /// Silence (no frame from the peer) before a ping, milliseconds.
    let pingInterval: Int64
    /// Unanswered pings after which the connection closes (1008).
    static let maximumUnansweredPings = 2
    /// A close frame went out: nothing else may follow it.
    private(set) var closeSent = false
    /// The peer's close frame arrived.
    private(set) var peerSentClose = false
    /// When the peer last sent anything, or the last ping went out (monotonic ms).
    private(set) var lastHeardOrPinged: Int64
    private(set) var unansweredPings = 0

    init(pingInterval: Int64, now: Int64) {
        self.pingInterval = pingInterval
        self.lastHeardOrPinged = now
    }

    /// Bytes arrived from the peer: it is alive, so the next ping waits a whole interval.
    mutating func heard(now: Int64) {
        lastHeardOrPinged = now
        unansweredPings = 0
    }

    /// One decoded event from the peer.
    mutating func received(_ event: WebSocketEvent) -> Action {
        switch event {
        case .ping(let payload):
            return closeSent ? .none : .pong(payload)
        case .pong:
            unansweredPings = 0
            return .none
        case .close(let code, _):
            peerSentClose = true
            defer { closeSent = true }
            return .answerClose(reply: !closeSent, code: code)
        case .message(let opcode, let payload):
            // After our close frame, the peer's data is read and dropped until its close arrives.
            return closeSent ? .none : .message(opcode, payload)
        }
    }

    /// The periodic check: a ping after `pingInterval` of silence; a close after
    /// ``maximumUnansweredPings`` pings without an answer.
    mutating func tick(now: Int64) -> Action {
        guard !closeSent, now - lastHeardOrPinged >= pingInterval else { return .none }
        if unansweredPings >= Self.maximumUnansweredPings {
            closeSent = true
            return .close(code: 1008, reason: "no pong to two pings")
        }
        unansweredPings += 1
        lastHeardOrPinged = now
        return .ping
    }

    /// We start the closing handshake: true when our close frame must be sent now (false when
    /// one went out already).
    mutating func beginClose() -> Bool {
        defer { closeSent = true }
        return !closeSent
    }
}
