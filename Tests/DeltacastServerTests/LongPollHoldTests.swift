import DeltacastWire
import Testing
@testable import DeltacastServer

/// A held long-poll's wait and what answers it when the wait ends (the timer itself is the
/// loop's, tested in TimerHeapTests).
@Suite struct LongPollHoldTests {
    @Test func theWaitIsWhatTheClientAskedForCappedByMaxWait() {
        #expect(Hold.wait(seconds: 25, maximum: 60_000) == 25_000)
        #expect(Hold.wait(seconds: 3_600, maximum: 60_000) == 60_000)
        #expect(Hold.wait(seconds: -5, maximum: 60_000) == 0)
    }

    /// A change, or a cold topic's first failure, that lands between the request's look at the
    /// topic and the hold's subscription reached no one: the hold answers at once instead of
    /// waiting for the deadline (a cold GET then got 504 instead of the upstream's 404 as 502).
    @Test func aHoldAnswersAtOnceWhenItsTopicMovedBeforeItSubscribed() {
        let one = Cursor(epoch: "e", seq: 1), two = Cursor(epoch: "e", seq: 2), other = Cursor(epoch: "f", seq: 1)
        #expect(!Hold.moved(.cold, since: nil, now: nil, failing: false))
        #expect(Hold.moved(.cold, since: nil, now: nil, failing: true))
        #expect(Hold.moved(.cold, since: nil, now: one, failing: false))
        #expect(!Hold.moved(.mirrored, since: one, now: one, failing: true))   // stale, unchanged: keep holding
        #expect(Hold.moved(.mirrored, since: one, now: two, failing: false))
        #expect(!Hold.moved(.multiplexed, since: two, now: two, failing: true))
        #expect(Hold.moved(.multiplexed, since: one, now: two, failing: false))
        #expect(Hold.moved(.multiplexed, since: nil, now: one, failing: false))
        #expect(Hold.moved(.multiplexed, since: one, now: other, failing: false))
    }

    @Test func anExpiredHoldIsAnsweredByKind() throws {
        var parser = HTTPRequestParser()
        parser.append(Array("GET /api/items HTTP/1.1\r\nHost: x\r\n\r\n".utf8)[...])
        guard case .head(let request) = try parser.next() else { Issue.record("no head"); return }
        #expect(Hold(kind: .mirrored, request: request).expiryResponse.status == 304)
        let cold = Hold(kind: .cold, request: request).expiryResponse
        #expect(cold.status == 504)
        #expect(String(decoding: cold.body, as: UTF8.self).contains("upstream_timeout"))
        let multiplexed = Hold(kind: .multiplexed, request: request).expiryResponse
        #expect(multiplexed.status == 204 && multiplexed.body.isEmpty)
    }
}
