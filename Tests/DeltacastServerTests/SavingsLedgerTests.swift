import DeltacastHub
@testable import DeltacastServer
import Testing

/// The migration report's history on explicit times: rates per sample, and the hour it keeps.
@Suite struct SavingsLedgerTests {
    @Test func theHistoryKeepsTheLastHourOfRates() {
        let ledger = SavingsLedger()
        let period = SavingsLedger.samplePeriodMilliseconds
        var totals = SavingsCounts()
        var now: Int64 = 0
        #expect(ledger.sampleIfDue(now: now, wall: now, endpoints: { ["/t": totals] }, intervals: ["/t": 1_000], budgetUsed: nil))   // the baseline
        #expect(!ledger.sampleIfDue(now: now + period - 1, wall: now, endpoints: { ["/t": totals] }, intervals: ["/t": 1_000], budgetUsed: nil))
        for _ in 0..<(SavingsLedger.historyLength + 80) {
            // Each period: 10 upstream requests; a subscriber alone would have polled 5 times.
            totals.upstreamRequests += 10
            totals.subscriberMilliseconds += period
            now += period
            #expect(ledger.sampleIfDue(now: now, wall: now, endpoints: { ["/t": totals] }, intervals: ["/t": 1_000], budgetUsed: 0.5))
        }
        let samples = ledger.samples()
        #expect(samples.count == SavingsLedger.historyLength)
        #expect(samples.first?.wallMilliseconds == 81 * period)
        #expect(samples.allSatisfy { $0 == SavingsLedger.Sample(wallMilliseconds: $0.wallMilliseconds, upstreamPerSecond: 2, avoidedPerSecond: -1, budgetUsed: 0.5) })
    }

    @Test func changeIndexReadsCountAsTheirEndpointsUpstreamRequests() {
        let ledger = SavingsLedger()
        ledger.indexRead(endpoint: "/items/{id}")
        ledger.indexRead(endpoint: "/items/{id}")
        var topics = SavingsCounts()
        topics.upstreamRequests = 3
        let totals = ledger.withIndexReads(["/items/{id}": topics])
        #expect(totals["/items/{id}"]?.upstreamRequests == 5)
        #expect(ledger.withIndexReads([:])["/items/{id}"]?.upstreamRequests == 2)   // no topic alive
    }
}
