import DeltacastLoop
import Testing
@testable import DeltacastHub

/// A topic's migration report numbers on explicit times: subscriber time, pushes and their bytes
/// against full bodies, and what an evicted topic counted staying with its endpoint.
@Suite struct SavingsTests {
    @Test func subscriberTimeCountsEachSubscriberWhileSubscribedAndUpToNow() throws {
        let clock = ManualHubClock()
        let (hub, _) = try makeHub(publishEndpoints, clock: clock)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        _ = topic.subscribe(loop: 0, since: nil)
        clock.advance(by: 1_000)
        _ = topic.subscribe(loop: 1, since: nil)
        clock.advance(by: 2_000)
        topic.unsubscribe(loop: 0)
        clock.advance(by: 4_000)
        // One for 1 s, two for 2 s, one more for the 4 s until now.
        let counts = topic.savingsCounts()
        #expect(counts.subscriberMilliseconds == 1_000 + 4_000 + 4_000)
        topic.savings.mirroredGet(sent: 100, full: 100)
        topic.savings.mirroredGet(sent: 0, full: 100)   // a 304
        topic.savings.mirroredGet(sent: 0, full: 0)     // held
        // Polling every 500 ms directly: 9 s of subscribers are 18 requests, plus the 3 GETs.
        #expect(topic.savingsCounts().directRequests(intervalMilliseconds: 500) == 21)
        #expect(topic.savingsCounts().bytesSent == 100)
        #expect(topic.savingsCounts().bytesFull == 200)
    }

    @Test func eachPushCountsItsEventAgainstTheFullBodyPerSubscriber() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        try topic.update(body: body(1), contentType: "application/json")   // nobody to push to
        _ = topic.subscribe(loop: 0, since: nil)
        _ = topic.subscribe(loop: 0, since: nil)
        _ = topic.subscribe(loop: 1, since: nil)
        try topic.update(body: body(2), contentType: "application/json")
        let patch = try #require(collector.changes.last)
        #expect(patch.kind == .patch)
        let counts = topic.savingsCounts()
        #expect(counts.pushes == 3)
        #expect(counts.bytesSent == 3 * patch.event.count)
        #expect(counts.bytesFull == 3 * body(2).count)
    }

    @Test func anEvictedTopicsCountsStayWithItsEndpoint() throws {
        let (hub, _) = try makeHub("""
            upstream: { base: http://127.0.0.1:9 }
            endpoints:
              - path: /live/{room}
                linger: 0s

            """)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        _ = topic.subscribe(loop: 0, since: nil)
        topic.unsubscribe(loop: 0)
        topic.savings.upstreamRequest(answered: true)
        topic.savings.upstreamRequest(answered: false)
        topic.savings.changed()
        let other = try hub.topic(named: "/live/b", endpoint: 0)
        other.savings.upstreamRequest(answered: true)
        #expect(hub.evictIfIdle(topic))
        let totals = hub.savingsByEndpoint()["/live/{room}"]
        #expect(totals?.upstreamRequests == 3)
        #expect(totals?.pollsAnswered == 2)
        #expect(totals?.pollsChanged == 1)
    }
}
