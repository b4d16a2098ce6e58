import Testing
@testable import DeltacastServer

/// Every connection deadline on explicit times: no socket, no sleep. The times are the ones a
/// user configures (`server.header_timeout` and so on), in milliseconds.
@Suite struct ConnectionDeadlinesTests {
    let limits = ConnectionDeadlines.Limits(headerTimeout: 10_000, idleTimeout: 60_000, slowConsumer: 30_000,
                                            tlsHandshake: 10_000, sseHeartbeat: 15_000, expiryGrace: 5_000)

    func due(_ deadlines: ConnectionDeadlines, at now: Int64, _ phase: ConnectionDeadlines.Phase, queueEmpty: Bool = true,
             wallClock: Int64 = 0, tokenExpiresAt: Int64? = nil) -> ConnectionDeadlines.Action {
        deadlines.due(now: now, wallClock: wallClock, phase: phase, queueEmpty: queueEmpty, tokenExpiresAt: tokenExpiresAt, limits: limits)
    }

    @Test func aRequestHeadNotCompleteWithinTheHeaderTimeoutGets408() {
        var deadlines = ConnectionDeadlines(now: 0)
        // Connected but silent: the idle timeout applies, not the header timeout.
        #expect(due(deadlines, at: 59_999, .request(idle: true, awaitingHead: true)) == .none)
        deadlines.read(now: 1_000)
        deadlines.requestBegan(now: 1_000)
        deadlines.read(now: 9_000)
        deadlines.requestBegan(now: 9_000)   // more bytes of the same head do not restart it
        #expect(due(deadlines, at: 10_999, .request(idle: false, awaitingHead: true)) == .none)
        #expect(due(deadlines, at: 11_000, .request(idle: false, awaitingHead: true)) == .requestTimedOut)
        // The head completed in time: the body and the response take what they take.
        deadlines.headReceived()
        #expect(due(deadlines, at: 50_000, .request(idle: false, awaitingHead: false)) == .none)
        // A pipelined request already buffered starts its own header timeout.
        deadlines.nextRequestBuffered(now: 50_000)
        #expect(due(deadlines, at: 60_000, .request(idle: false, awaitingHead: true)) == .requestTimedOut)
    }

    @Test func anIdleKeepAliveConnectionClosesAfterTheIdleTimeout() {
        var deadlines = ConnectionDeadlines(now: 0)
        deadlines.read(now: 5_000)
        #expect(due(deadlines, at: 64_999, .request(idle: true, awaitingHead: true)) == .none)
        #expect(due(deadlines, at: 65_000, .request(idle: true, awaitingHead: true)) == .idle)
        // Mid-response (not idle), the idle timeout does not apply.
        #expect(due(deadlines, at: 200_000, .request(idle: false, awaitingHead: false)) == .none)
    }

    @Test func aSlowConsumerIsClosedWhenNoBytesLeaveForTheTimeout() {
        var deadlines = ConnectionDeadlines(now: 0)
        #expect(due(deadlines, at: 29_999, .session, queueEmpty: false) == .tick(silent: false))
        #expect(due(deadlines, at: 30_000, .session, queueEmpty: false) == .slowConsumer)
        // Any progress restarts it; an empty queue never times out.
        deadlines.wrote(progress: true, drained: false, now: 25_000)
        #expect(due(deadlines, at: 54_999, .session, queueEmpty: false) != .slowConsumer)
        #expect(due(deadlines, at: 55_000, .session, queueEmpty: false) == .slowConsumer)
        #expect(due(deadlines, at: 500_000, .request(idle: false, awaitingHead: false), queueEmpty: true) == .none)
        // A flush that wrote nothing (the socket was full) is not progress.
        deadlines.wrote(progress: false, drained: false, now: 60_000)
        #expect(due(deadlines, at: 60_000, .session, queueEmpty: false) == .slowConsumer)
    }

    @Test func anEventStreamSendsAHeartbeatAfterSilence() {
        var deadlines = ConnectionDeadlines(now: 0)
        #expect(due(deadlines, at: 14_999, .session) == .tick(silent: false))
        #expect(due(deadlines, at: 15_000, .session) == .tick(silent: true))
        deadlines.wrote(progress: true, drained: true, now: 15_000)
        #expect(due(deadlines, at: 29_999, .session) == .tick(silent: false))
        #expect(due(deadlines, at: 30_000, .session) == .tick(silent: true))
    }

    /// A stream whose reader stopped (bytes pending, `slow_consumer_timeout` not reached) gets
    /// no heartbeat: one used to be queued at every sweep past the interval, a few dozen bytes
    /// a second per stuck stream, until the send buffer's limit (found by the never-reading
    /// clients of Tests/Security/exhaustion_test.py, whose RSS kept rising).
    @Test func aStreamWithBytesPendingGetsNoHeartbeat() {
        var deadlines = ConnectionDeadlines(now: 0)
        deadlines.wrote(progress: true, drained: false, now: 10_000)
        for now in stride(from: Int64(25_000), through: 39_000, by: 1_000) {
            #expect(due(deadlines, at: now, .session, queueEmpty: false) == .tick(silent: false))
        }
        #expect(due(deadlines, at: 40_000, .session, queueEmpty: false) == .slowConsumer)
        #expect(due(deadlines, at: 25_000, .session, queueEmpty: true) == .tick(silent: true))
    }

    @Test func aTLSHandshakeMustCompleteInTime() {
        let deadlines = ConnectionDeadlines(now: 100)
        #expect(due(deadlines, at: 10_099, .tlsHandshake) == .none)
        #expect(due(deadlines, at: 10_100, .tlsHandshake) == .handshakeTimedOut)
    }

    @Test func anExpiredTokenEndsAStreamAfterTheGrace() {
        let deadlines = ConnectionDeadlines(now: 0)
        let exp: Int64 = 1_700_000_000_000
        #expect(due(deadlines, at: 1, .session, wallClock: exp + 4_999, tokenExpiresAt: exp) == .tick(silent: false))
        #expect(due(deadlines, at: 1, .session, wallClock: exp + 5_000, tokenExpiresAt: exp) == .tokenExpired)
        // Plain requests are checked when they arrive, not by the sweep (held polls bind no
        // token: they pass nil).
        #expect(due(deadlines, at: 1, .request(idle: false, awaitingHead: false), wallClock: exp + 5_000, tokenExpiresAt: exp) == .none)
        #expect(due(deadlines, at: 1, .session, wallClock: exp + 5_000, tokenExpiresAt: nil) == .tick(silent: false))
    }

    @Test func aLingeringWebSocketClosesTwoSecondsAfterOurCloseFrameAndNothingElseApplies() {
        var deadlines = ConnectionDeadlines(now: 0)
        let began = deadlines.beginLinger(now: 40_000)
        let again = deadlines.beginLinger(now: 41_000)
        #expect(began && !again)   // once
        #expect(deadlines.isLingering)
        #expect(due(deadlines, at: 41_999, .session, queueEmpty: false) == .none)   // not a slow consumer now
        #expect(due(deadlines, at: 42_000, .session) == .lingerEnded)
    }
}
