public import DeltacastBase
public import DeltacastLoop
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What one poll produced, as the poller's owner sees it.
public enum PollResult: Sendable {
    /// `304 Not Modified`: the last accepted body still stands (no parse, no diff).
    case notModified
    /// A 2xx answer with a body.
    case body(status: Int, contentType: String, body: [UInt8])
    /// A non-2xx answer (besides 304).
    case status(Int, body: [UInt8])
    /// No answer.
    case failed(UpstreamFailure)
}

/// How the owner judged a poll.
public enum PollVerdict: Sendable {
    /// Good: keep the response's validators, poll again after the interval.
    case accepted
    /// An upstream problem (bad status, invalid body...): back off.
    case rejected
}

/// One topic's polling parameters.
public struct PollJob: Sendable {
    /// The upstream request (without conditional headers; the poller adds them).
    public var request: UpstreamRequest
    /// Time between polls.
    public var intervalMilliseconds: Int64
    /// Largest random delay added to each interval.
    public var jitterMilliseconds: Int64
    /// The request's origin (`scheme://host:port`), whose budget it spends, if any.
    public var origin: String?
    /// Whether the origin's authorizer (``Poller/authorizers``) signs the request (false for a
    /// passthrough topic, which carries its client's credentials and nothing else).
    public var authorized: Bool
    /// Bounds of an adaptive interval, milliseconds (``intervalMilliseconds`` is then the
    /// shortest); nil for a fixed one.
    public var adaptive: (min: Int64, max: Int64)?

    /// Creates a job.
    public init(request: UpstreamRequest, intervalMilliseconds: Int64, jitterMilliseconds: Int64, origin: String? = nil, authorized: Bool = false,
                adaptive: (min: Int64, max: Int64)? = nil) {
        self.request = request
        self.intervalMilliseconds = intervalMilliseconds
        self.jitterMilliseconds = jitterMilliseconds
        self.origin = origin
        self.authorized = authorized
        self.adaptive = adaptive
    }
}

/// Schedules polls (DESIGN.md "Polling"): one per job per interval plus jitter, conditional
/// requests (`If-None-Match`, `If-Modified-Since`), exponential backoff on errors capped at
/// ``Backoff/cap``, `Retry-After` honoured (capped at ``Backoff/retryAfterCap``), and at most
/// `maxConcurrent` requests in flight: jobs that come due past it wait in a FIFO queue, which
/// holds each job at most once.
///
/// An origin with a budget (``setBudgets(_:)``) never gets more requests than its
/// ``RequestBudget`` allows. Polls due past it wait in that origin's queue, served in this
/// order: first polls and refreshes, then by due time, each brought forward by up to one
/// interval for the topic's watchers (`interval × log2(1 + watchers) / 8`). A waiting poll is
/// therefore served before any poll that came due more than an interval after it: none
/// starves, and its interval stretches instead (``Report/stretch``). A `429` or `503` with
/// `Retry-After` slows the whole origin (``RequestBudget/slowDown(at:forMilliseconds:)``).
///
/// Everything runs on the clock's thread (the client's event loop in production).
public final class Poller: @unchecked Sendable {
    /// Backoff rules.
    public enum Backoff {
        /// Longest delay errors alone can cause: 60 s, or the interval when it is longer.
        public static let cap: Int64 = 60_000
        /// Longest `Retry-After` honoured: 10 minutes.
        public static let retryAfterCap: Int64 = 600_000

        /// The delay before the next poll after `failures` consecutive errors.
        public static func delay(interval: Int64, failures: Int) -> Int64 {
            guard failures > 0 else { return interval }
            let limit = max(interval, cap)
            var delay = interval
            for _ in 0..<min(failures, 32) { delay *= 2; if delay >= limit { return limit } }
            return delay
        }
    }

    private final class Entry: UpstreamResponseHandling {
        unowned let poller: Poller
        let key: String
        var job: PollJob
        let target: any PollTarget
        /// Polls sent so far (the first goes ahead of deferred ones).
        var polls = 0
        /// Waiting in its origin's budget queue: the generation of its live queue item.
        var deferral: Int?
        /// The poll was asked for now (a refresh): it goes ahead of deferred ones.
        var urgent = false
        /// Interval actually kept at the last send, over the configured one.
        var stretch: Double?
        /// The `Authorization` value the request in flight carries, when an authorizer gave it.
        var credential: String?
        /// The poll before was answered `401` with an authorizer's credential and sent again.
        var retriedAfter401 = false
        /// An adaptive job's learned change rate and interval (nil for a fixed job).
        var adaptive: AdaptiveInterval?
        /// The poll being judged found a change (``Poller/changed(key:)`` during its handler).
        var changedThisPoll = false
        var timer: UInt64?
        /// When `timer` fires.
        var dueAt: Int64 = 0
        var inFlight = false
        var queued = false
        var refreshAfter = false
        var stopped = false
        var failures = 0
        /// The last accepted body's `ETag` and `Last-Modified`, sent with each poll.
        var validators: UpstreamValidators?
        /// The request signed with the authorizer's last credential, made again when it changes.
        var signed: (credential: String, request: UpstreamRequest)?
        /// Runs `Poller.due` for this entry: made once, not per poll.
        var fire: () -> Void = {}
        var lastStart: Int64 = 0
        /// The start of the poll before the last one (nil before the second poll).
        var previousStart: Int64?

        init(poller: Poller, key: String, job: PollJob, target: any PollTarget) {
            self.poller = poller
            self.key = key
            self.job = job
            self.target = target
            fire = { [unowned self] in self.poller.due(self) }
        }

        func upstreamResponded(_ response: UpstreamResponse) { poller.completed(self, response) }
    }

    /// A poll waiting for its origin's budget.
    private struct Deferred {
        var urgent: Bool
        var key: Int64
        var sequence: Int
        var generation: Int
        var entry: Entry
    }

    /// One origin's budget, its waiting polls, and what it spent.
    private struct Origin {
        var budget: RequestBudget
        var waiting = Heap<Deferred> { a, b in
            a.urgent != b.urgent ? a.urgent : a.key != b.key ? a.key < b.key : a.sequence < b.sequence
        }
        var timer: UInt64?
        /// Polls that had to wait for the budget, since the start.
        var deferredTotal = 0
        /// Requests started in the current one-second window, and in the last whole one.
        var windowStart: Int64 = 0
        var startedInWindow = 0
        var startedLastWindow = 0
    }


    /// Where requests go, and the clock and timers the schedule runs on.
    private let fetcher: any UpstreamFetching
    private let clock: any PollClock
    private let maxConcurrent: Int
    private var entries: [String: Entry] = [:]
    private var waiting: [Entry] = []
    private var waitingStart = 0
    private var running = 0
    private var origins: [String: Origin] = [:]
    private var deferralSequence = 0
    /// Who signs the requests to each origin (OAuth2 client credentials), by origin.
    public var authorizers: [String: any UpstreamAuthorizing] = [:]
    /// This node's share of every budget (cluster mode: one over the live nodes).
    public var budgetShare: () -> Double = { 1 }
    /// The budgets' state as of the last second, readable from any thread.
    public let budgetStatus = Locked<[UpstreamBudgetStatus]>([])
    /// Hears the budgets' state once a second.
    public var onBudgetStatus: (([UpstreamBudgetStatus]) -> Void)?
    /// One poll as the owner's metrics and status page see it.
    public struct Report {
        /// The job's key.
        public var key: String
        /// What the poll produced.
        public var result: PollResult
        /// The request's duration, milliseconds.
        public var milliseconds: Int64
        /// Consecutive failed polls, this one included (0 after a success).
        public var failures: Int
        /// Milliseconds until the next poll; nil when the job was stopped meanwhile.
        public var nextInMilliseconds: Int64?
        /// The time since the poll before over the configured interval, when a budget made it
        /// wait (1 when it kept its interval); nil for a first poll or an unbudgeted origin.
        public var stretch: Double?
    }

    /// Called after every poll, once its result was judged and the next poll scheduled.
    public var observer: ((Report) -> Void)?

    /// A poller using `client` on its loop, with at most `maxConcurrent` requests in flight.
    public convenience init(client: UpstreamClient, maxConcurrent: Int) {
        self.init(fetcher: client, clock: client.loop, maxConcurrent: maxConcurrent)
    }

    /// A poller sending through `fetcher` on `clock`'s thread (a test double for either seam).
    public init(fetcher: any UpstreamFetching, clock: any PollClock, maxConcurrent: Int) {
        self.fetcher = fetcher
        self.clock = clock
        self.maxConcurrent = max(1, maxConcurrent)
    }

    /// While a handler runs: when the poll before the one it judges started, on the clock's
    /// time (nil for a first poll). A change that poll found happened after it.
    public private(set) var judgedPreviousStart: Int64?

    /// Whether `key` is being polled.
    public func isPolling(_ key: String) -> Bool { entries[key] != nil }

    /// Starts polling `key` now, then every interval while its target ``PollTarget/isWanted``;
    /// the target judges each result. When it says it may not poll at a due time (cluster mode:
    /// another node leads the topic), no request is sent and the next due time is one interval
    /// later. Starting a key that is polled already does nothing.
    public func start(key: String, job: PollJob, target: any PollTarget) {
        guard entries[key] == nil else { return }
        let entry = Entry(poller: self, key: key, job: job, target: target)
        entry.adaptive = job.adaptive.map { AdaptiveInterval(minimum: $0.min, maximum: $0.max) }
        entries[key] = entry
        due(entry)
    }

    /// ``start(key:job:target:)`` with closures for the target (tests, the change index).
    public func start(key: String, job: PollJob, wanted: @escaping () -> Bool, permitted: @escaping () -> Bool = { true },
                      watchers: @escaping () -> Int = { 0 }, handler: @escaping (PollResult) -> PollVerdict) {
        start(key: key, job: job, target: ClosurePollTarget(wanted: wanted, permitted: permitted, watchers: watchers, handler: handler))
    }

    /// Gives `key` a new job (a configuration reload): the next poll uses the new request and
    /// interval, counted from the last poll's start. Validators stay only when the URL did.
    /// Returns false when `key` is not polled.
    @discardableResult
    public func update(key: String, job: PollJob) -> Bool {
        guard let entry = entries[key] else { return false }
        if entry.job.request.url != job.request.url { entry.validators = nil }
        entry.signed = nil
        entry.adaptive = job.adaptive.map { bounds in
            entry.adaptive?.rebounded(minimum: bounds.min, maximum: bounds.max) ?? AdaptiveInterval(minimum: bounds.min, maximum: bounds.max)
        }
        entry.job = job
        if let timer = entry.timer {
            clock.cancel(timer)
            let delay = max(0, entry.lastStart + effectiveInterval(entry) - clock.nowMilliseconds)
            arm(entry, afterMilliseconds: delay)
        }
        return true
    }

    /// `key`'s last poll found a change (its handler, or later, when the change was committed
    /// elsewhere): an adaptive job counts it, so its interval shortens; a poll scheduled later
    /// than the new interval allows comes sooner.
    public func changed(key: String) {
        // The first poll's state (no poll before it) is where the topic starts, not a change.
        guard let entry = entries[key], entry.adaptive != nil, entry.polls > 1 else { return }
        if entry.inFlight {
            entry.changedThisPoll = true
            return
        }
        entry.adaptive?.recordChange()
        if let timer = entry.timer {
            let due = entry.lastStart + effectiveInterval(entry)
            let delay = due - clock.nowMilliseconds
            clock.cancel(timer)
            arm(entry, afterMilliseconds: max(0, delay))
        }
    }

    /// A new subscriber arrived at `key` (one with no state yet): an adaptive job polls at once,
    /// or as soon as its minimum interval since the last poll allows, so many arrivals cost
    /// at most one poll per minimum interval. A fixed job keeps its schedule (its newest state
    /// is at most one interval old). Returns whether the next poll came sooner.
    @discardableResult
    public func subscriberArrived(key: String) -> Bool {
        guard let entry = entries[key], let bounds = entry.job.adaptive, let timer = entry.timer, entry.polls > 0 else { return false }
        let soonest = max(clock.nowMilliseconds, entry.lastStart + bounds.min)
        guard soonest < entry.dueAt else { return false }
        clock.cancel(timer)
        entry.urgent = true
        arm(entry, afterMilliseconds: soonest - clock.nowMilliseconds)
        return true
    }

    /// An adaptive job's interval for the topic's watchers: each doubling of them shortens it
    /// by a quarter of the interval's length, down to the minimum.
    private func effectiveInterval(_ entry: Entry) -> Int64 {
        guard let adaptive = entry.adaptive else { return entry.job.intervalMilliseconds }
        let watchers = Double(max(0, entry.target.watchers))
        return max(adaptive.minimum, Int64(Double(adaptive.milliseconds) / (1 + log2(1 + watchers) / 4)))
    }

    /// Drops `key`'s validators, so its next poll asks for a full body (a body whose change could
    /// not be committed must come again, not as a 304).
    public func forgetValidators(key: String) {
        guard let entry = entries[key] else { return }
        entry.validators = nil
    }

    /// Stops polling `key` (a request in flight completes and is ignored).
    public func stop(key: String) {
        guard let entry = entries.removeValue(forKey: key) else { return }
        entry.stopped = true
        if let timer = entry.timer { clock.cancel(timer) }
    }

    /// Polls `key` now (after the request in flight, if any). False when it is not polled.
    @discardableResult
    public func refresh(key: String) -> Bool {
        guard let entry = entries[key] else { return false }
        if entry.inFlight || entry.queued { entry.refreshAfter = true; return true }
        if let timer = entry.timer { clock.cancel(timer); entry.timer = nil }
        entry.urgent = true
        due(entry)
        return true
    }

    // MARK: Budgets

    /// Sets the budget of each origin (requests per second); an origin left out has none. A
    /// budget that stays keeps what its bucket holds; polls waiting for a removed one go.
    public func setBudgets(_ rates: [String: Double]) {
        let now = clock.nowMilliseconds
        for (origin, rate) in rates where origins[origin]?.budget.ratePerSecond != rate {
            var budget = RequestBudget(ratePerSecond: rate, now: now)
            budget.setShare(budgetShare(), at: now)
            var state = origins[origin] ?? Origin(budget: budget)
            state.budget = budget
            origins[origin] = state
        }
        for origin in origins.keys where rates[origin] == nil {
            guard let state = origins.removeValue(forKey: origin) else { continue }
            if let timer = state.timer { clock.cancel(timer) }
            var heap = state.waiting
            while let item = heap.pop() {
                guard item.entry.deferral == item.generation, !item.entry.stopped else { continue }
                item.entry.deferral = nil
                due(item.entry)
            }
        }
        if !origins.isEmpty && statusTimer == nil { publishStatus() }
    }

    private var statusTimer: UInt64?

    /// Once a second: each budget's share, its window, and the status others read.
    private func publishStatus() {
        let now = clock.nowMilliseconds
        let share = budgetShare()
        var status: [UpstreamBudgetStatus] = []
        for origin in origins.keys.sorted() {
            guard var state = origins[origin] else { continue }
            if state.budget.share != share { state.budget.setShare(share, at: now) }
            rollWindow(&state, now)
            let allowed = state.budget.rate(at: now)
            status.append(UpstreamBudgetStatus(origin: origin, ratePerSecond: state.budget.ratePerSecond, allowedPerSecond: allowed,
                                       usedRatio: Double(state.startedLastWindow) / max(1, state.budget.ratePerSecond * share),
                                       deferredTotal: state.deferredTotal, waiting: state.waiting.count, slowed: state.budget.isSlowed(at: now)))
            origins[origin] = state
        }
        budgetStatus.withLock { $0 = status }
        onBudgetStatus?(status)
        statusTimer = origins.isEmpty ? nil : clock.schedule(afterMilliseconds: 1000) { [unowned self] in self.publishStatus() }
    }

    private func rollWindow(_ state: inout Origin, _ now: Int64) {
        if now - state.windowStart >= 2000 {
            state.startedLastWindow = 0
            state.startedInWindow = 0
            state.windowStart = now
        } else if now - state.windowStart >= 1000 {
            state.startedLastWindow = state.startedInWindow
            state.startedInWindow = 0
            state.windowStart += 1000
        }
    }

    /// Whether `entry` may be sent now as far as its origin's budget goes (a token is taken);
    /// if not, it waits in the origin's queue.
    private func admitted(_ entry: Entry) -> Bool {
        guard !origins.isEmpty, let origin = entry.job.origin, var state = origins[origin] else { return true }
        let now = clock.nowMilliseconds
        // A poll that waited its turn in the queue is not passed by one that just came due.
        if state.waiting.isEmpty, state.budget.take(at: now) {
            rollWindow(&state, now)
            state.startedInWindow += 1
            origins[origin] = state
            return true
        }
        origins[origin] = state
        postpone(entry, origin: origin)
        return false
    }

    private func postpone(_ entry: Entry, origin: String) {
        guard var state = origins[origin] else { return }
        let now = clock.nowMilliseconds
        let urgent = entry.urgent || entry.polls == 0
        if entry.deferral != nil && !urgent { return }   // already waiting
        deferralSequence += 1
        let interval = entry.job.intervalMilliseconds
        let boost = min(interval, Int64(Double(interval) * log2(1 + Double(max(0, entry.target.watchers))) / 8))
        entry.deferral = deferralSequence
        state.waiting.push(Deferred(urgent: urgent, key: now - boost, sequence: deferralSequence, generation: deferralSequence, entry: entry))
        state.deferredTotal += 1
        origins[origin] = state
        armBudgetTimer(origin)
    }

    private func armBudgetTimer(_ origin: String) {
        guard var state = origins[origin], state.timer == nil, !state.waiting.isEmpty else { return }
        let wait = state.budget.wait(at: clock.nowMilliseconds)
        state.timer = clock.schedule(afterMilliseconds: wait) { [unowned self] in
            self.origins[origin]?.timer = nil
            self.drain(origin)
        }
        origins[origin] = state
    }

    /// Sends what `origin`'s budget and the concurrency limit allow, best first.
    private func drain(_ origin: String) {
        while running < maxConcurrent, var state = origins[origin], let next = state.waiting.first {
            guard next.entry.deferral == next.generation, !next.entry.stopped else {
                _ = state.waiting.pop()
                origins[origin] = state
                continue
            }
            let now = clock.nowMilliseconds
            guard state.budget.take(at: now) else { break }
            _ = state.waiting.pop()
            rollWindow(&state, now)
            state.startedInWindow += 1
            origins[origin] = state
            next.entry.deferral = nil
            if next.entry.target.isWanted { send(next.entry) } else { stop(key: next.entry.key) }
        }
        armBudgetTimer(origin)
    }

    private func due(_ entry: Entry) {
        entry.timer = nil
        guard !entry.stopped else { return }
        guard entry.target.isWanted else { stop(key: entry.key); return }
        guard entry.target.mayPoll else {
            // Another node polls it: what this node's validators describe may be old.
            entry.validators = nil
            arm(entry, afterMilliseconds: entry.job.intervalMilliseconds)
            return
        }
        if running >= maxConcurrent {
            entry.queued = true
            waiting.append(entry)
            return
        }
        guard admitted(entry) else { return }
        send(entry)
    }

    private func send(_ entry: Entry) {
        running += 1
        entry.inFlight = true
        let now = clock.nowMilliseconds
        entry.stretch = entry.polls > 0 && !origins.isEmpty && entry.job.origin.map({ origins[$0] != nil }) == true
            ? Double(now - entry.lastStart) / Double(max(1, effectiveInterval(entry))) : nil
        entry.previousStart = entry.polls > 0 ? entry.lastStart : nil
        entry.polls += 1
        entry.urgent = false
        entry.lastStart = now
        entry.credential = nil
        guard entry.job.authorized, let origin = entry.job.origin, let authorizer = authorizers[origin] else {
            var request = entry.job.request
            request.validators = entry.validators
            fetcher.fetch(request, replyTo: entry)
            return
        }
        authorizer.authorization { [unowned self] result in
            switch result {
            case .success(let value):
                entry.credential = value
                if entry.signed?.credential != value {
                    var signed = entry.job.request
                    signed.headers.removeAll { $0.name.lowercased() == "authorization" }
                    signed.headers.append(("Authorization", value))
                    entry.signed = (value, signed)
                }
                var request = entry.signed!.request
                request.validators = entry.validators
                self.fetcher.fetch(request, replyTo: entry)
            case .failure(let failure):
                // No credential: the poll fails with the reason, and backs off like any failure.
                self.completed(entry, UpstreamResponse(status: 0, headers: [], body: [], failure: failure))
            }
        }
    }

    private func completed(_ entry: Entry, _ response: UpstreamResponse) {
        running -= 1
        entry.inFlight = false
        let elapsed = clock.nowMilliseconds - entry.lastStart
        startWaiting()
        guard !entry.stopped else { return }
        if response.status == 401, let credential = entry.credential, let origin = entry.job.origin {
            authorizers[origin]?.rejected(credential)
            if !entry.retriedAfter401 {
                // The proxy's own credential was refused (revoked, rotated early): once, a new
                // one and the same poll again, as soon as the budget allows.
                entry.retriedAfter401 = true
                entry.urgent = true
                due(entry)
                return
            }
        }
        if response.status != 401 { entry.retriedAfter401 = false }
        let result: PollResult
        if let failure = response.failure {
            result = .failed(failure)
        } else if response.status == 304 {
            result = .notModified
        } else if (200..<300).contains(response.status) {
            result = .body(status: response.status, contentType: response.contentType ?? "application/json", body: response.body)
        } else {
            result = .status(response.status, body: response.body)
        }
        judgedPreviousStart = entry.previousStart
        let verdict = entry.target.judge(result)
        judgedPreviousStart = nil
        guard !entry.stopped else {
            observer?(Report(key: entry.key, result: result, milliseconds: elapsed, failures: entry.failures, nextInMilliseconds: nil))
            return
        }
        var delay: Int64
        switch verdict {
        case .accepted:
            entry.failures = 0
            if case .body = result {
                if response.etag != entry.validators?.etag || response.lastModified != entry.validators?.lastModified {
                    entry.validators = UpstreamValidators(etag: response.etag, lastModified: response.lastModified)
                }
            }
            // The time since the poll before is quiet time unless a change is reported. The
            // first poll's state is where the topic starts, not a change.
            if let previous = entry.previousStart {
                entry.adaptive?.record(covering: entry.lastStart - previous, changed: entry.changedThisPoll)
            }
            entry.changedThisPoll = false
            delay = effectiveInterval(entry)
        case .rejected:
            entry.failures += 1
            // Validators of a rejected body must not turn its successor into a 304.
            if case .body = result { entry.validators = nil }
            delay = Backoff.delay(interval: entry.job.intervalMilliseconds, failures: entry.failures)
        }
        if let retryAfter = response.retryAfter.flatMap(Self.retryAfterMilliseconds) {
            delay = max(delay, min(retryAfter, Backoff.retryAfterCap))
            // The origin is overloaded, not only this topic: spend less of its budget meanwhile.
            if response.status == 429 || response.status == 503, let origin = entry.job.origin, origins[origin] != nil {
                origins[origin]?.budget.slowDown(at: clock.nowMilliseconds, forMilliseconds: min(retryAfter, Backoff.retryAfterCap))
            }
        }
        if entry.refreshAfter {
            entry.refreshAfter = false
            delay = 0
        } else {
            // Measured from the poll's start, so a slow upstream does not stretch the interval.
            delay = max(0, delay - elapsed)
            if entry.job.jitterMilliseconds > 0 { delay += Int64.random(in: 0...entry.job.jitterMilliseconds) }
        }
        observer?(Report(key: entry.key, result: result, milliseconds: elapsed, failures: entry.failures, nextInMilliseconds: delay,
                         stretch: entry.stretch))
        arm(entry, afterMilliseconds: delay)
    }

    /// Schedules `entry`'s next poll.
    private func arm(_ entry: Entry, afterMilliseconds delay: Int64) {
        entry.dueAt = clock.nowMilliseconds + delay
        entry.timer = clock.schedule(afterMilliseconds: delay, entry.fire)
    }

    private func startWaiting() {
        // Polls that waited for a budget went through it already: they are served first.
        for origin in origins.keys where running < maxConcurrent { drain(origin) }
        while running < maxConcurrent, waitingStart < waiting.count {
            let entry = waiting[waitingStart]
            waitingStart += 1
            entry.queued = false
            if entry.stopped { continue }
            if !entry.target.isWanted { stop(key: entry.key); continue }
            if admitted(entry) { send(entry) }
        }
        if waitingStart == waiting.count { waiting.removeAll(keepingCapacity: true); waitingStart = 0 }
    }

    /// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), in milliseconds from now.
    public static func retryAfterMilliseconds(_ value: String) -> Int64? {
        let text = value.trimmingCharacters(in: " \t")
        if let seconds = Int64(text) { return seconds >= 0 ? seconds * 1000 : nil }
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
        let fields = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard fields.count == 6, fields[5] == "GMT", let day = Int32(fields[1]), let month = months.firstIndex(of: String(fields[2])),
              let year = Int32(fields[3]) else { return nil }
        let clock = fields[4].split(separator: ":").compactMap { Int32($0) }
        guard clock.count == 3 else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = Int32(month)
        parts.tm_mday = day
        parts.tm_hour = clock[0]
        parts.tm_min = clock[1]
        parts.tm_sec = clock[2]
        let then = timegm(&parts)
        let now = time(nil)
        return max(0, Int64(then - now) * 1000)
    }
}
