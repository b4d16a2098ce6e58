import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// The connection's deadlines (``ConnectionDeadlines``), checked by the loop's sweep.
extension HTTPConnection {
    /// What the connection is doing, for its deadlines.
    private var phase: ConnectionDeadlines.Phase {
        if let tls, !tls.established { return .tlsHandshake }
        if !isPlainHTTP { return .session }
        return .request(idle: isIdle, awaitingHead: requests.awaitingHead)
    }

    /// Performs what ``ConnectionDeadlines`` says is due (the loop's sweep calls this).
    func checkDeadlines(now: Int64, wallClock: Int64, limits: ConnectionDeadlines.Limits) {
        var action = deadlines.due(now: now, wallClock: wallClock, phase: phase, queueEmpty: queue.isEmpty, tokenExpiresAt: principal?.expiresAt, limits: limits)
        if action == .tokenExpired {
            expireToken()
            if !lifecycle.isAnswering { return }
            // Only public topics remained: the stream carries on, anonymous, and its other
            // deadlines apply.
            action = deadlines.due(now: now, wallClock: wallClock, phase: phase, queueEmpty: queue.isEmpty, tokenExpiresAt: nil, limits: limits)
        }
        switch action {
        case .none, .tokenExpired:
            break
        case .lingerEnded, .idle:
            close()
        case .slowConsumer:
            slowConsumerTimedOut()
        case .handshakeTimedOut:
            closeReason = CloseReason(level: .info, text: "TLS handshake not completed within tls.handshake_timeout")
            close()
        case .requestTimedOut:
            write(.error(408, "request_timeout", "the request header was not received within \(limits.headerTimeout) ms"), headOnly: false, close: true)
            flush()
            // Written: the connection lingers. Not written (the client reads nothing): close.
            if lifecycle != .lingering { close() }
        case .tick(let silent):
            tickSession(now: now, silent: silent)
        }
    }
}
