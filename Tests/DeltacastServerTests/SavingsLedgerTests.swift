@testable import DeltacastServer
import Testing

/// The migration report's ledger on explicit times: subscriber time, direct-polling equivalents,
/// topics that are gone folding into their endpoint, and the bounds on topics and history.
@Suite struct SavingsLedgerTests {
    @Test func subscriberTimeCountsEachSubscriberWhileSubscribedAndUpToNow() {
        let ledger = SavingsLedger(loops: 1)
        ledger.subscribers(0, key: "k", name: "/t", endpoint: "/t", 1, now: 10_000)
        ledger.subscribers(0, key: "k", name: "/t", endpoint: "/t", 1, now: 11_000)
        ledger.subscribers(0, key: "k", name: "/t", endpoint: "/t", -1, now: 13_000)
        // One for 1 s, two for 2 s, one more for the 4 s until now.
        let savings = ledger.totals(now: 17_000).topics["k"]!.savings
        #expect(savings.subscriberMilliseconds == 1_000 + 4_000 + 4_000)
        ledger.count(0, key: "k", name: "/t", endpoint: "/t") { $0.savings.mirroredGets += 3 }
        // Polling every 500 ms directly: 9 s of subscribers are 18 requests, plus the 3 GETs.
        #expect(ledger.totals(now: 17_000).endpoints["/t"]!.directRequests(intervalMilliseconds: 500) == 21)
    }

    @Test func topicsThatAreGoneFoldIntoTheirEndpointAndTheShardStaysBounded() {
        let ledger = SavingsLedger(loops: 1, maxTopicsPerShard: 3)
        let live: Set<String> = ["a", "b", "c"]
        ledger.attach(live: { live.contains($0) })
        for key in ["d", "e", "a", "b", "c"] {
            ledger.count(0, key: key, name: "/" + key, endpoint: "/{x}") { $0.savings.upstreamRequests += 2 }
        }
        // Passing 3 topics (at "b") folded "d" and "e", which are gone.
        let totals = ledger.totals(now: 0)
        #expect(Set(totals.topics.keys) == live)
        #expect(totals.endpoints["/{x}"]!.upstreamRequests == 10)
    }

    @Test func aTopicWithASubscriberIsNotFoldedEvenWhenTheHubDroppedIt() {
        let ledger = SavingsLedger(loops: 1)
        ledger.attach(live: { _ in false })
        ledger.subscribers(0, key: "k", name: "/t", endpoint: "/t", 1, now: 0)
        ledger.prune(0, now: 1_000)
        #expect(ledger.totals(now: 1_000).topics["k"] != nil)
        ledger.subscribers(0, key: "k", name: "/t", endpoint: "/t", -1, now: 2_000)
        ledger.prune(0, now: 3_000)
        let totals = ledger.totals(now: 3_000)
        #expect(totals.topics["k"] == nil)
        #expect(totals.endpoints["/t"]!.subscriberMilliseconds == 2_000)
    }

    @Test func theHistoryKeepsTheLastHourOfRates() {
        let ledger = SavingsLedger(loops: 1)
        let period = SavingsLedger.samplePeriodMilliseconds
        var now: Int64 = 0
        #expect(ledger.sampleIfDue(now: now, wall: now, intervals: ["/t": 1_000], budgetUsed: nil))   // the baseline
        #expect(!ledger.sampleIfDue(now: now + period - 1, wall: now, intervals: ["/t": 1_000], budgetUsed: nil))
        ledger.subscribers(0, key: "k", name: "/t", endpoint: "/t", 1, now: 0)
        for _ in 0..<(SavingsLedger.historyLength + 80) {
            // Each period: 10 upstream requests; the subscriber alone would have polled 5 times.
            ledger.count(1, key: "k", name: "/t", endpoint: "/t") { $0.savings.upstreamRequests += 10 }
            now += period
            #expect(ledger.sampleIfDue(now: now, wall: now, intervals: ["/t": 1_000], budgetUsed: 0.5))
        }
        let samples = ledger.samples()
        #expect(samples.count == SavingsLedger.historyLength)
        #expect(samples.first?.wallMilliseconds == 81 * period)
        #expect(samples.allSatisfy { $0 == SavingsLedger.Sample(wallMilliseconds: $0.wallMilliseconds, upstreamPerSecond: 2, avoidedPerSecond: -1, budgetUsed: 0.5) })
    }
}
