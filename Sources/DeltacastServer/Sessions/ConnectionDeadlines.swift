/// Every deadline of one connection, as a value type with no socket and no clock: the
/// connection records what happened and when (``read(now:)``, ``wrote(progress:drained:now:)``),
/// and the loop's sweep asks ``due(now:wallClock:phase:queueEmpty:tokenExpiresAt:limits:)`` what
/// to do, then does it (STYLE.md #2). Tests drive it with explicit times.
///
/// The deadlines, in the order they are checked:
/// 1. **linger**: 2 s after our WebSocket close frame, or after a plain HTTP answer that closes
///    the connection, the half-closed socket is closed;
/// 2. **slow consumer**: bytes queued and none written for `limits.slow_consumer_timeout`;
/// 3. **TLS handshake**: not complete `tls.handshake_timeout` after the accept;
/// 4. **token expiry**: a push stream's token past `exp` + `auth.expiry_grace`;
/// 5. per phase: the **header timeout** (a request begun and its head not complete:
///    `server.header_timeout`, 408), the keep-alive **idle timeout** (`server.idle_timeout`),
///    and a push session's own clock (``PushSession/tick(now:silent:)``), told whether the
///    stream was **silent** for `server.sse_heartbeat` (the event stream's heartbeat). The
///    WebSocket's pings follow ``WebSocketProtocolState``; a held poll's wait also has its own
///    timer.
struct ConnectionDeadlines {
    /// The configured durations, milliseconds.
    struct Limits: Equatable {
        var headerTimeout: Int64
        var idleTimeout: Int64
        var slowConsumer: Int64
        var tlsHandshake: Int64
        var sseHeartbeat: Int64
        var expiryGrace: Int64
        /// How long a connection lingers half-closed after our WebSocket close frame or our
        /// closing HTTP answer, waiting for the peer's close.
        static let linger: Int64 = 2000
    }

    /// What the connection is doing, as far as its deadlines care.
    enum Phase: Equatable {
        case tlsHandshake
        /// Plain HTTP: `idle` between requests with nothing to write; `awaitingHead` while no
        /// request head is complete.
        case request(idle: Bool, awaitingHead: Bool)
        /// A push session (WebSocket, event stream, held poll).
        case session
    }

    /// What the sweep must do now.
    enum Action: Equatable {
        case none
        /// Linger over: close.
        case lingerEnded
        /// Close as a slow consumer (WebSocket: 1008).
        case slowConsumer
        /// Close: the TLS handshake took too long.
        case handshakeTimedOut
        /// Answer 408 and close.
        case requestTimedOut
        /// Close the idle keep-alive connection.
        case idle
        /// Run the session's clock; `silent`: nothing queued and nothing written for
        /// `server.sse_heartbeat`.
        case tick(silent: Bool)
        /// End the token-protected subscriptions (then ask again: the stream may carry on).
        case tokenExpired
    }

    /// When bytes last arrived (monotonic ms).
    private(set) var lastActivity: Int64
    /// When bytes last left.
    private(set) var lastWrite: Int64
    /// When the outbound queue last shrank or was empty (slow consumers).
    private(set) var lastProgress: Int64
    /// When the first byte of the request being received arrived, or nil.
    private(set) var requestStartedAt: Int64?
    /// While lingering, the deadline; 0 otherwise (an optional would cost 8 more bytes).
    private(set) var lingerUntil: Int64 = 0

    init(now: Int64) {
        lastActivity = now
        lastWrite = now
        lastProgress = now
    }

    var isLingering: Bool { lingerUntil != 0 }

    /// Bytes arrived.
    mutating func read(now: Int64) { lastActivity = now }

    /// A request's first byte arrived (the header timeout starts), unless one is counting.
    mutating func requestBegan(now: Int64) { if requestStartedAt == nil { requestStartedAt = now } }

    /// The request head is complete (the header timeout stops).
    mutating func headReceived() { requestStartedAt = nil }

    /// Bytes of the next pipelined request are already buffered: its header timeout starts.
    mutating func nextRequestBuffered(now: Int64) { requestStartedAt = now }

    /// A flush: `progress` when the queue shrank, `drained` when it is empty.
    mutating func wrote(progress: Bool, drained: Bool, now: Int64) {
        if progress { lastWrite = now; lastProgress = now }
        if drained { lastProgress = now }
    }

    /// Starts lingering; false when already lingering.
    mutating func beginLinger(now: Int64) -> Bool {
        guard lingerUntil == 0 else { return false }
        lingerUntil = now + Limits.linger
        return true
    }

    /// What is due at `now` (monotonic ms); `wallClock` (Unix ms) is for a token's `exp`.
    func due(now: Int64, wallClock: Int64, phase: Phase, queueEmpty: Bool, tokenExpiresAt: Int64?, limits: Limits) -> Action {
        if lingerUntil != 0 { return now >= lingerUntil ? .lingerEnded : .none }
        if !queueEmpty && now - lastProgress >= limits.slowConsumer { return .slowConsumer }
        switch phase {
        case .tlsHandshake:
            // Handshake reads do not move lastActivity: it is still the time of the accept.
            return now - lastActivity >= limits.tlsHandshake ? .handshakeTimedOut : .none
        case .session:
            if let tokenExpiresAt, wallClock >= tokenExpiresAt + limits.expiryGrace { return .tokenExpired }
            // Only a stream with nothing pending is silent: a heartbeat behind unsent bytes
            // would reach no one sooner, and one queued per sweep grew a stuck stream's queue.
            return .tick(silent: queueEmpty && now - lastWrite >= limits.sseHeartbeat)
        case .request(let idle, let awaitingHead):
            if let requestStartedAt, awaitingHead, now - requestStartedAt >= limits.headerTimeout { return .requestTimedOut }
            return idle && now - lastActivity >= limits.idleTimeout ? .idle : .none
        }
    }
}
