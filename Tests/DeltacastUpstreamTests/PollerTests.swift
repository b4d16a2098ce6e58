import DeltacastUpstream
import Testing

/// A clock that moves only when told: callbacks run, in due order, as ``advance(by:)`` passes them.
final class ManualClock: PollClock {
    private(set) var nowMilliseconds: Int64 = 1_000
    private var timers: [(due: Int64, id: UInt64, callback: () -> Void)] = []
    private var nextID: UInt64 = 1

    func schedule(afterMilliseconds milliseconds: Int64, _ callback: @escaping () -> Void) -> UInt64 {
        defer { nextID += 1 }
        timers.append((nowMilliseconds + max(0, milliseconds), nextID, callback))
        return nextID
    }

    func cancel(_ id: UInt64) { timers.removeAll { $0.id == id } }

    /// Moves the clock forward, running every callback that falls due on the way.
    func advance(by milliseconds: Int64) {
        let end = nowMilliseconds + milliseconds
        while let next = timers.enumerated().filter({ $0.element.due <= end }).min(by: { ($0.element.due, $0.element.id) < ($1.element.due, $1.element.id) }) {
            timers.remove(at: next.offset)
            nowMilliseconds = max(nowMilliseconds, next.element.due)
            next.element.callback()
        }
        nowMilliseconds = end
    }

    /// When the next callback is due (nil: none scheduled).
    var nextDue: Int64? { timers.map(\.due).min() }
}

/// An upstream whose answers the test gives: requests wait until ``answer(_:)``.
final class ScriptedUpstream: UpstreamFetching {
    private(set) var requests: [UpstreamRequest] = []
    private var pending: [(UpstreamRequest, any UpstreamResponseHandling)] = []
    var inFlight: Int { pending.count }

    func fetch(_ request: UpstreamRequest, replyTo handler: any UpstreamResponseHandling) {
        requests.append(request)
        pending.append((request, handler))
    }

    /// Completes the oldest request in flight.
    func answer(status: Int = 200, headers: [(String, String)] = [], body: String = "{}", failure: UpstreamFailure? = nil) {
        let (_, handler) = pending.removeFirst()
        handler.upstreamResponded(UpstreamResponse(status: failure == nil ? status : 0, headers: headers.map { ($0.0.lowercased(), $0.1) },
                                    body: Array(body.utf8), failure: failure))
    }
}

/// The poller on a manual clock and a scripted upstream: no socket, no sleep.
@Suite struct PollerTests {
    let clock = ManualClock()
    let upstream = ScriptedUpstream()

    func job(_ url: String = "http://upstream/a", interval: Int64 = 1_000, jitter: Int64 = 0) -> PollJob {
        PollJob(request: UpstreamRequest(url: url, headers: [], timeoutMilliseconds: 5_000, maxBody: 1 << 20, followRedirects: false),
                intervalMilliseconds: interval, jitterMilliseconds: jitter)
    }

    @Test func pollsAtOnceThenOncePerIntervalFromThePollsStart() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        var results = 0
        poller.start(key: "a", job: job(), wanted: { true }, handler: { _ in results += 1; return .accepted })
        #expect(upstream.requests.count == 1)
        clock.advance(by: 300)   // the upstream takes 300 ms
        upstream.answer()
        #expect(results == 1)
        #expect(clock.nextDue == Int64(2_000))   // from the poll's start, not its end
        clock.advance(by: 699)
        #expect(upstream.requests.count == 1)
        clock.advance(by: 1)
        #expect(upstream.requests.count == 2)
    }

    @Test func jitterAddsAtMostItsBoundToEachInterval() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        poller.start(key: "a", job: job(interval: 1_000, jitter: 100), wanted: { true }, handler: { _ in .accepted })
        for _ in 0..<20 {
            let start = clock.nowMilliseconds
            upstream.answer()
            let due = clock.nextDue!
            #expect(due >= start + 1_000 && due <= start + 1_100)
            clock.advance(by: due - clock.nowMilliseconds)
        }
    }

    @Test func errorsBackOffExponentiallyUpToTheCapAndASuccessResets() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        poller.start(key: "a", job: job(interval: 1_000), wanted: { true }, handler: { response in
            if case .body = response { return .accepted }
            return .rejected
        })
        var delays: [Int64] = []
        for _ in 0..<8 {
            upstream.answer(status: 503, body: "down")
            delays.append(clock.nextDue! - clock.nowMilliseconds)
            clock.advance(by: delays.last!)
        }
        #expect(delays == [2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000])
        upstream.answer(status: 200)
        #expect(clock.nextDue! - clock.nowMilliseconds == 1_000)
    }

    @Test func retryAfterHoldsTheNextPollBackUpToTenMinutes() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        poller.start(key: "a", job: job(interval: 1_000), wanted: { true }, handler: { _ in .rejected })
        upstream.answer(status: 429, headers: [("Retry-After", "30")])
        #expect(clock.nextDue! - clock.nowMilliseconds == 30_000)
        clock.advance(by: 30_000)
        upstream.answer(status: 503, headers: [("Retry-After", "86400")])
        #expect(clock.nextDue! - clock.nowMilliseconds == Poller.Backoff.retryAfterCap)
    }

    @Test func conditionalHeadersFollowAnAcceptedBodyAndNotARejectedOne() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        var verdict = PollVerdict.accepted
        poller.start(key: "a", job: job(), wanted: { true }, handler: { _ in verdict })
        upstream.answer(headers: [("ETag", "\"v1\""), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")])
        clock.advance(by: 1_000)
        let second = upstream.requests[1].sentHeaders.map { "\($0.name): \($0.value)" }
        #expect(second == ["If-None-Match: \"v1\"", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"])
        verdict = .rejected
        upstream.answer(headers: [("ETag", "\"bad\"")])
        clock.advance(by: 2_000)
        #expect(upstream.requests[2].sentHeaders.isEmpty)
    }

    /// Cluster mode: a node that does not hold the topic's lease sends nothing; its validators
    /// are dropped (another node's polls moved the state on); once it leads it polls at the
    /// next due time, unconditionally.
    @Test func aJobThatIsNotPermittedSendsNoRequestAndForgetsItsValidators() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        var leader = true
        poller.start(key: "a", job: job(), wanted: { true }, permitted: { leader }, handler: { _ in .accepted })
        upstream.answer(headers: [("ETag", "\"v1\"")])
        leader = false
        clock.advance(by: 5_000)
        #expect(upstream.requests.count == 1)      // five due times, no request
        leader = true
        clock.advance(by: 1_000)
        #expect(upstream.requests.count == 2)
        #expect(upstream.requests[1].sentHeaders.isEmpty)   // no If-None-Match from before
    }

    @Test func atMostMaxConcurrentInFlightTheRestWaitInOrderOnceEach() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 2)
        for key in ["a", "b", "c", "d"] {
            poller.start(key: key, job: job("http://upstream/\(key)"), wanted: { true }, handler: { _ in .accepted })
        }
        #expect(upstream.inFlight == 2)
        #expect(poller.refresh(key: "c"))   // already waiting: not queued twice
        upstream.answer()
        #expect(upstream.requests.map(\.url) == ["http://upstream/a", "http://upstream/b", "http://upstream/c"])
        upstream.answer()
        upstream.answer()
        upstream.answer()
        #expect(upstream.requests.map(\.url).suffix(1) == ["http://upstream/d"])
        #expect(upstream.inFlight == 0)
        #expect(upstream.requests.count == 4)
    }

    @Test func aJobNoLongerWantedStopsAtItsNextDueTime() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        var wanted = true
        poller.start(key: "a", job: job(), wanted: { wanted }, handler: { _ in .accepted })
        upstream.answer()
        wanted = false   // the last subscriber left and linger passed
        clock.advance(by: 1_000)
        #expect(upstream.requests.count == 1)
        #expect(!poller.isPolling("a"))
        #expect(clock.nextDue == nil)
    }

    @Test func refreshPollsNowOrRightAfterTheRequestInFlight() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        poller.start(key: "a", job: job(interval: 60_000), wanted: { true }, handler: { _ in .accepted })
        #expect(poller.refresh(key: "a"))   // in flight: right after it
        upstream.answer()
        #expect(clock.nextDue == clock.nowMilliseconds)
        clock.advance(by: 0)
        #expect(upstream.requests.count == 2)
        upstream.answer()
        #expect(poller.refresh(key: "a"))   // waiting for its timer: now
        #expect(upstream.requests.count == 3)
        #expect(!poller.refresh(key: "unknown"))
    }

    @Test func anUpdatedJobTakesItsIntervalFromTheLastStartAndDropsValidatorsOfAnotherURL() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        poller.start(key: "a", job: job(interval: 10_000), wanted: { true }, handler: { _ in .accepted })
        upstream.answer(headers: [("ETag", "\"v1\"")])
        clock.advance(by: 1_000)
        #expect(poller.update(key: "a", job: job(interval: 2_000)))
        #expect(clock.nextDue == Int64(3_000))
        clock.advance(by: 1_000)
        #expect(upstream.requests.last?.sentHeaders.map(\.name) == ["If-None-Match"])
        upstream.answer(headers: [("ETag", "\"v2\"")])
        #expect(poller.update(key: "a", job: job("http://upstream/b", interval: 2_000)))
        clock.advance(by: 2_000)
        #expect(upstream.requests.last?.url == "http://upstream/b")
        #expect(upstream.requests.last?.sentHeaders.isEmpty == true)
        #expect(!poller.update(key: "unknown", job: job()))
    }

    @Test func aStoppedJobIgnoresTheAnswerInFlight() {
        let poller = Poller(fetcher: upstream, clock: clock, maxConcurrent: 4)
        var results = 0
        poller.start(key: "a", job: job(), wanted: { true }, handler: { _ in results += 1; return .accepted })
        poller.stop(key: "a")
        upstream.answer()
        #expect(results == 0)
        #expect(clock.nextDue == nil)
    }
}
