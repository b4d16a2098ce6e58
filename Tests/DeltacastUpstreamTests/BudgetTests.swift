import DeltacastUpstream
import Testing

/// An upstream that answers every request 5 ms later (on the manual clock), with `status` and
/// `headers` as the test sets them, and records when each request started and for what URL.
final class TimedUpstream: UpstreamFetching {
    let clock: ManualClock
    var status = 200
    var headers: [(String, String)] = []
    private(set) var started: [(at: Int64, url: String)] = []

    init(clock: ManualClock) { self.clock = clock }

    func fetch(_ request: UpstreamRequest, replyTo handler: any UpstreamResponseHandling) {
        started.append((clock.nowMilliseconds, request.url))
        let response = UpstreamResponse(status: status, headers: headers.map { ($0.0.lowercased(), $0.1) }, body: Array("{}".utf8), failure: nil)
        _ = clock.schedule(afterMilliseconds: 5) { handler.upstreamResponded(response) }
    }

    /// The most requests that started in any window of `milliseconds`.
    func busiestWindow(_ milliseconds: Int64) -> Int {
        let times = started.map(\.at)
        var most = 0, first = 0
        for last in times.indices {
            while times[last] - times[first] >= milliseconds { first += 1 }
            most = max(most, last - first + 1)
        }
        return most
    }
}

/// Request budgets on a manual clock: the rate is never exceeded, polls wait in a fair order,
/// and an origin that asks for `Retry-After` is spared.
@Suite struct BudgetTests {
    let clock = ManualClock()

    func job(_ name: String, origin: String? = "http://legacy:80", interval: Int64 = 1_000) -> PollJob {
        PollJob(request: UpstreamRequest(url: "http://legacy/\(name)", headers: [], timeoutMilliseconds: 5_000, maxBody: 1 << 20, followRedirects: false),
                intervalMilliseconds: interval, jitterMilliseconds: 0, origin: origin)
    }

    @Test func aBucketHoldsATenthOfASecondAndRefillsAtItsRate() {
        var budget = RequestBudget(ratePerSecond: 50, now: 0)
        #expect(budget.burst == 5)
        var taken = 0
        while budget.take(at: 0) { taken += 1 }
        #expect(taken == 5)
        let wait = budget.wait(at: 0)
        #expect(wait == 20)   // one request every 20 ms at 50/s
        let refilled = budget.take(at: 20)
        #expect(refilled)
        budget.slowDown(at: 20, forMilliseconds: 1_000)
        #expect(budget.rate(at: 21) == 25 && budget.isSlowed(at: 21))
        budget.slowDown(at: 30, forMilliseconds: 500)   // again meanwhile: halved again
        #expect(budget.rate(at: 31) == 12.5)
        #expect(budget.rate(at: 1_020) == 50 && !budget.isSlowed(at: 1_020))
        budget.setShare(1.0 / 3, at: 2_000)   // three live nodes
        #expect(abs(budget.rate(at: 2_000) - 50.0 / 3) < 1e-9)
        #expect(abs(budget.burst - 50.0 / 30) < 1e-9)
    }

    @Test func theRateIsNeverExceededAndNoTopicStarves() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 64)
        poller.setBudgets(["http://legacy:80": 50])
        for index in 0..<200 {
            poller.start(key: "t\(index)", job: job("t\(index)"), wanted: { true }, handler: { _ in .accepted })
        }
        clock.advance(by: 30_000)
        // 200 topics at 1 s want 200/s; the budget allows 50/s and a burst of 5.
        #expect(upstream.busiestWindow(1_000) <= 55)
        #expect(upstream.started.count >= 50 * 30 - 5 && upstream.started.count <= 50 * 30 + 5)
        // Each topic's interval stretched to about 200 / 50 = 4 s, and no more than one interval
        // past that.
        var last: [String: Int64] = [:], longest: Int64 = 0
        for request in upstream.started {
            if let before = last[request.url] { longest = max(longest, request.at - before) }
            last[request.url] = request.at
        }
        #expect(last.count == 200)
        #expect(longest <= 5_000, "a topic waited \(longest) ms")
        let status = poller.budgetStatus.withLock { $0 }
        #expect(status.count == 1 && status[0].deferredTotal > 1_000 && status[0].usedRatio >= 0.9)
    }

    @Test func aFirstPollAndARefreshGoAheadOfDeferredPolls() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 64)
        poller.setBudgets(["http://legacy:80": 10])
        for index in 0..<50 { poller.start(key: "t\(index)", job: job("t\(index)"), wanted: { true }, handler: { _ in .accepted }) }
        clock.advance(by: 6_000)   // the 50 first polls went; the next rounds wait
        poller.start(key: "new", job: job("new"), wanted: { true }, handler: { _ in .accepted })
        clock.advance(by: 100)
        #expect(upstream.started.last?.url == "http://legacy/new")
        clock.advance(by: 1_000)
        poller.refresh(key: "t3")
        clock.advance(by: 100)
        #expect(upstream.started.last?.url == "http://legacy/t3")
    }

    @Test func aWatchedTopicGoesAheadOfAnUnwatchedOneDueAtTheSameTime() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 64)
        poller.setBudgets(["http://legacy:80": 1])
        // The one token goes to the first; the next two come due together and wait.
        poller.start(key: "first", job: job("first", interval: 60_000), wanted: { true }, handler: { _ in .accepted })
        poller.start(key: "quiet", job: job("quiet", interval: 60_000), wanted: { true }, watchers: { 0 }, handler: { _ in .accepted })
        poller.start(key: "watched", job: job("watched", interval: 60_000), wanted: { true }, watchers: { 200 }, handler: { _ in .accepted })
        clock.advance(by: 2_100)
        #expect(upstream.started.map(\.url) == ["http://legacy/first", "http://legacy/watched", "http://legacy/quiet"])
        // One a second: the budget is 1/s.
        #expect(upstream.started[1].at == 2_000 && upstream.started[2].at == 3_000)
    }

    @Test func retryAfterFromTheOriginSlowsTheWholeOrigin() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 64)
        poller.setBudgets(["http://legacy:80": 20])
        for index in 0..<100 { poller.start(key: "t\(index)", job: job("t\(index)"), wanted: { true }, handler: { _ in .accepted }) }
        clock.advance(by: 5_000)
        let before = upstream.started.count
        upstream.status = 429
        upstream.headers = [("Retry-After", "10")]
        clock.advance(by: 60)   // one 429 answer
        upstream.status = 200
        upstream.headers = []
        clock.advance(by: 5_000)
        let slowed = upstream.started.count - before
        // 20/s halved for 10 s: about 50 in 5 s, not 100.
        #expect(slowed <= 60, "\(slowed) requests in 5 s")
        #expect(poller.budgetStatus.withLock { $0 }.first?.slowed == true)
        clock.advance(by: 10_000)
        let after = upstream.started.count
        clock.advance(by: 5_000)
        #expect(upstream.started.count - after >= 95)   // back to 20/s
    }

    @Test func anOriginWithoutABudgetIsNotHeldBack() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 64)
        poller.setBudgets(["http://legacy:80": 1])
        for index in 0..<20 { poller.start(key: "o\(index)", job: job("o\(index)", origin: "http://other:80"), wanted: { true }, handler: { _ in .accepted }) }
        clock.advance(by: 10)
        #expect(upstream.started.count == 20)
        #expect(poller.budgetStatus.withLock { $0 }.first?.deferredTotal == 0)
    }
}

/// Adaptive intervals on a manual clock: a changing topic comes down toward its minimum, a
/// quiet one drifts to its maximum, a change brings the next poll sooner, watchers shorten it.
@Suite struct AdaptiveIntervalTests {
    let clock = ManualClock()

    func job(_ name: String, min: Int64 = 250, max: Int64 = 8_000) -> PollJob {
        PollJob(request: UpstreamRequest(url: "http://legacy/\(name)", headers: [], timeoutMilliseconds: 5_000, maxBody: 1 << 20, followRedirects: false),
                intervalMilliseconds: min, jitterMilliseconds: 0, adaptive: (min, max))
    }

    func gaps(_ upstream: TimedUpstream, _ name: String) -> [Int64] {
        let times = upstream.started.filter { $0.url.hasSuffix("/" + name) }.map(\.at)
        return zip(times.dropFirst(), times).map { $0 - $1 }
    }

    @Test func aQuietTopicDriftsToItsMaximumAndAChangingOneComesDownToItsMinimum() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 8)
        poller.start(key: "quiet", job: job("quiet"), wanted: { true }, handler: { _ in .accepted })
        poller.start(key: "busy", job: job("busy"), wanted: { true }, handler: { [weak poller, weak clock] _ in
            // Every poll of this one finds a change (its handler says so after judging).
            _ = clock?.schedule(afterMilliseconds: 0) { poller?.changed(key: "busy") }
            return .accepted
        })
        clock.advance(by: 600_000)
        let quiet = gaps(upstream, "quiet")
        // It starts at √(5 × 250 × 8,000) ≈ 3,162 ms and lengthens with each quiet poll.
        #expect(quiet.first == 3_162)
        let growing = quiet.prefix { $0 < 8_000 }
        #expect(zip(growing.dropFirst(), growing).allSatisfy { $0 > $1 })
        #expect(growing.count < 12 && quiet.suffix(20).allSatisfy { $0 == 8_000 })
        let busy = gaps(upstream, "busy")
        // The first poll's state is no change: the first gap is the prior's. The first change
        // outweighs the prior (1.2 changes in 11.2 s: √(250 × 11,162 / 1.2) ≈ 1,525 ms); each
        // one after shortens it further.
        #expect(busy.first == 3_162)
        #expect(busy.dropFirst().first.map { (1_500..<1_550).contains($0) } == true)
        #expect(zip(busy.dropFirst(), busy).allSatisfy { $0 <= $1 })
        #expect(busy.last.map { $0 <= 300 } == true)
    }

    @Test func aChangeShortensTheIntervalAndBringsThePendingPollSooner() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 8)
        poller.start(key: "t", job: job("t"), wanted: { true }, handler: { _ in .accepted })
        clock.advance(by: 60_000)   // drifted to 8 s
        #expect(gaps(upstream, "t").last == 8_000)
        let last = upstream.started.last!.at
        clock.advance(by: 10)
        // The last poll found a change: about 1.2 changes in 66 s of polling (the prior's 0.2
        // and this one) make √(250 × 66,000 / 1.2) ≈ 3.7 s.
        poller.changed(key: "t")
        clock.advance(by: 8_000)
        let next = upstream.started.first { $0.at > last }?.at
        #expect(next.map { (3_500..<4_000).contains($0 - last) } == true)
    }

    @Test func watchersShortenTheInterval() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 8)
        poller.start(key: "watched", job: job("watched"), wanted: { true }, watchers: { 15 }, handler: { _ in .accepted })
        poller.start(key: "alone", job: job("alone"), wanted: { true }, watchers: { 0 }, handler: { _ in .accepted })
        clock.advance(by: 120_000)
        // 15 watchers: log2(16) / 4 = 1, so half the interval.
        #expect(gaps(upstream, "alone").last == 8_000)
        #expect(gaps(upstream, "watched").last == 4_000)
    }

    @Test func aNewSubscriberPollsAtOnceButAtMostOncePerMinimumInterval() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 8)
        poller.start(key: "t", job: job("t"), wanted: { true }, handler: { _ in .accepted })
        clock.advance(by: 60_000)   // drifted to 8 s
        clock.advance(by: clock.nextDue! - clock.nowMilliseconds)   // to the next poll
        let last = upstream.started.last!.at
        #expect(last == clock.nowMilliseconds)
        clock.advance(by: 1_000)
        #expect(poller.subscriberArrived(key: "t"))
        clock.advance(by: 0)
        #expect(upstream.started.last!.at == last + 1_000)   // at once, 7 s early
        // Three more arrivals within the minimum (250 ms) bring one poll, 250 ms after that one.
        clock.advance(by: 100)
        #expect(poller.subscriberArrived(key: "t"))
        #expect(!poller.subscriberArrived(key: "t"))
        clock.advance(by: 100)
        #expect(!poller.subscriberArrived(key: "t"))
        clock.advance(by: 1_000)
        let arrivals = upstream.started.filter { $0.at > last }.map { $0.at - last }
        #expect(arrivals == [1_000, 1_250])
    }

    @Test func aFixedIntervalKeepsItsScheduleWhenASubscriberArrives() {
        let upstream = TimedUpstream(clock: clock)
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 8)
        let fixed = PollJob(request: UpstreamRequest(url: "http://legacy/t", headers: [], timeoutMilliseconds: 5_000, maxBody: 1 << 20, followRedirects: false),
                            intervalMilliseconds: 5_000, jitterMilliseconds: 0)
        poller.start(key: "t", job: fixed, wanted: { true }, handler: { _ in .accepted })
        clock.advance(by: 1_000)
        #expect(!poller.subscriberArrived(key: "t"))
        clock.advance(by: 10_000)
        #expect(upstream.started.map(\.at) == [1_000, 6_000, 11_000])   // the clock starts at 1 s
    }
}
