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
