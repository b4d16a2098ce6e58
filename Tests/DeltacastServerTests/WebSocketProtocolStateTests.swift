import DeltacastWire
import Testing
@testable import DeltacastServer

/// The WebSocket control state on explicit times: no socket, no sleep.
@Suite struct WebSocketProtocolStateTests {
    @Test func aSilentPeerIsPingedEveryIntervalAndClosedAfterTwoUnansweredPings() {
        var state = WebSocketProtocolState(pingInterval: 30_000, now: 0)
        do { let result = state.tick(now: 29_999); #expect(result == .none) }
        do { let result = state.tick(now: 30_000); #expect(result == .ping) }
        do { let result = state.tick(now: 59_999); #expect(result == .none) }
        do { let result = state.tick(now: 60_000); #expect(result == .ping) }
        do { let result = state.tick(now: 90_000); #expect(result == .close(code: 1008, reason: "no pong to two pings")) }
        #expect(state.closeSent)
        do { let result = state.tick(now: 200_000); #expect(result == .none) }
    }

    @Test func aPongResetsTheCountAndTrafficDefersThePing() {
        var state = WebSocketProtocolState(pingInterval: 1_000, now: 0)
        do { let result = state.tick(now: 1_000); #expect(result == .ping) }
        do { let result = state.received(.pong([])); #expect(result == .none) }
        do { let result = state.tick(now: 2_000); #expect(result == .ping) }
        #expect(state.tick(now: 3_000) == .ping)   // the pong above reset the count: a second chance
        // A peer that keeps sending is never pinged.
        var talking = WebSocketProtocolState(pingInterval: 1_000, now: 0)
        for now in stride(from: Int64(500), through: 10_000, by: 500) {
            talking.heard(now: now)
            do { let result = talking.tick(now: now + 999); #expect(result == .none) }
        }
    }

    @Test func pingsAreAnsweredUntilOurCloseFrame() {
        var state = WebSocketProtocolState(pingInterval: 1_000, now: 0)
        do { let result = state.received(.ping([1, 2])); #expect(result == .pong([1, 2])) }
        do { let first = state.beginClose(); #expect(first) }
        do { let second = state.beginClose(); #expect(!second) }   // only one close frame
        do { let result = state.received(.ping([3])); #expect(result == .none) }
        #expect(state.received(.message(.text, [65])) == .none)   // data after our close is dropped
        do { let result = state.received(.close(code: 1000, reason: "")); #expect(result == .answerClose(reply: false, code: 1000)) }
        #expect(state.peerSentClose)
    }

    @Test func thePeersCloseIsEchoedOnce() {
        var state = WebSocketProtocolState(pingInterval: 1_000, now: 0)
        do { let result = state.received(.message(.text, [65])); #expect(result == .message(.text, [65])) }
        do { let result = state.received(.close(code: 4000, reason: "bye")); #expect(result == .answerClose(reply: true, code: 4000)) }
        #expect(state.closeSent && state.peerSentClose)
        var quiet = WebSocketProtocolState(pingInterval: 1_000, now: 0)
        do { let result = quiet.received(.close(code: nil, reason: "")); #expect(result == .answerClose(reply: true, code: nil)) }
        do { let result = quiet.tick(now: 10_000); #expect(result == .none) }
    }
}
