import DeltacastLoop
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

    /// Creates a job.
    public init(request: UpstreamRequest, intervalMilliseconds: Int64, jitterMilliseconds: Int64) {
        self.request = request
        self.intervalMilliseconds = intervalMilliseconds
        self.jitterMilliseconds = jitterMilliseconds
    }
}

/// Schedules polls (DESIGN.md "Polling"): one per job per interval plus jitter, conditional
/// requests (`If-None-Match`, `If-Modified-Since`), exponential backoff on errors capped at
/// ``Backoff/cap``, `Retry-After` honoured (capped at ``Backoff/retryAfterCap``), and at most
/// `maxConcurrent` requests in flight: jobs that come due past it wait in a FIFO queue, which
/// holds each job at most once.
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

    private final class Entry {
        let key: String
        var job: PollJob
        let wanted: () -> Bool
        let permitted: () -> Bool
        let handler: (PollResult) -> PollVerdict
        var timer: UInt64?
        var inFlight = false
        var queued = false
        var refreshAfter = false
        var stopped = false
        var failures = 0
        var etag: String?
        var lastModified: String?
        var lastStart: Int64 = 0

        init(key: String, job: PollJob, wanted: @escaping () -> Bool, permitted: @escaping () -> Bool, handler: @escaping (PollResult) -> PollVerdict) {
            self.key = key
            self.job = job
            self.wanted = wanted
            self.permitted = permitted
            self.handler = handler
        }
    }

    /// Where requests go, and the clock and timers the schedule runs on.
    private let fetcher: any UpstreamFetching
    private let clock: any PollClock
    private let maxConcurrent: Int
    private var entries: [String: Entry] = [:]
    private var waiting: [Entry] = []
    private var waitingStart = 0
    private var running = 0
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

    /// Whether `key` is being polled.
    public func isPolling(_ key: String) -> Bool { entries[key] != nil }

    /// Starts polling `key` now, then every interval while `wanted()` says so; `handler`
    /// judges each result. When `permitted()` says no at a due time (cluster mode: another
    /// node leads the topic), no request is sent and the next due time is one interval later.
    /// Starting a key that is polled already does nothing.
    public func start(key: String, job: PollJob, wanted: @escaping () -> Bool, permitted: @escaping () -> Bool = { true },
                      handler: @escaping (PollResult) -> PollVerdict) {
        guard entries[key] == nil else { return }
        let entry = Entry(key: key, job: job, wanted: wanted, permitted: permitted, handler: handler)
        entries[key] = entry
        due(entry)
    }

    /// Gives `key` a new job (a configuration reload): the next poll uses the new request and
    /// interval, counted from the last poll's start. Validators stay only when the URL did.
    /// Returns false when `key` is not polled.
    @discardableResult
    public func update(key: String, job: PollJob) -> Bool {
        guard let entry = entries[key] else { return false }
        if entry.job.request.url != job.request.url { entry.etag = nil; entry.lastModified = nil }
        entry.job = job
        if let timer = entry.timer {
            clock.cancel(timer)
            let delay = max(0, entry.lastStart + job.intervalMilliseconds - clock.nowMilliseconds)
            entry.timer = clock.schedule(afterMilliseconds: delay) { [unowned self] in self.due(entry) }
        }
        return true
    }

    /// Drops `key`'s validators, so its next poll asks for a full body (a body whose change could
    /// not be committed must come again, not as a 304).
    public func forgetValidators(key: String) {
        guard let entry = entries[key] else { return }
        entry.etag = nil
        entry.lastModified = nil
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
        due(entry)
        return true
    }

    private func due(_ entry: Entry) {
        entry.timer = nil
        guard !entry.stopped else { return }
        guard entry.wanted() else { stop(key: entry.key); return }
        guard entry.permitted() else {
            // Another node polls it: what this node's validators describe may be old.
            entry.etag = nil
            entry.lastModified = nil
            entry.timer = clock.schedule(afterMilliseconds: entry.job.intervalMilliseconds) { [unowned self] in self.due(entry) }
            return
        }
        if running >= maxConcurrent {
            entry.queued = true
            waiting.append(entry)
            return
        }
        send(entry)
    }

    private func send(_ entry: Entry) {
        running += 1
        entry.inFlight = true
        entry.lastStart = clock.nowMilliseconds
        var request = entry.job.request
        if let etag = entry.etag { request.headers.append(("If-None-Match", etag)) }
        if let lastModified = entry.lastModified { request.headers.append(("If-Modified-Since", lastModified)) }
        fetcher.fetch(request) { [unowned self] response in
            self.completed(entry, response)
        }
    }

    private func completed(_ entry: Entry, _ response: UpstreamResponse) {
        running -= 1
        entry.inFlight = false
        let elapsed = clock.nowMilliseconds - entry.lastStart
        startWaiting()
        guard !entry.stopped else { return }
        let result: PollResult
        if let failure = response.failure {
            result = .failed(failure)
        } else if response.status == 304 {
            result = .notModified
        } else if (200..<300).contains(response.status) {
            result = .body(status: response.status, contentType: response.header("content-type") ?? "application/json", body: response.body)
        } else {
            result = .status(response.status, body: response.body)
        }
        let verdict = entry.handler(result)
        guard !entry.stopped else {
            observer?(Report(key: entry.key, result: result, milliseconds: elapsed, failures: entry.failures, nextInMilliseconds: nil))
            return
        }
        var delay: Int64
        switch verdict {
        case .accepted:
            entry.failures = 0
            if case .body = result {
                entry.etag = response.header("etag")
                entry.lastModified = response.header("last-modified")
            }
            delay = entry.job.intervalMilliseconds
        case .rejected:
            entry.failures += 1
            // Validators of a rejected body must not turn its successor into a 304.
            if case .body = result { entry.etag = nil; entry.lastModified = nil }
            delay = Backoff.delay(interval: entry.job.intervalMilliseconds, failures: entry.failures)
        }
        if let retryAfter = response.header("retry-after").flatMap(Self.retryAfterMilliseconds) {
            delay = max(delay, min(retryAfter, Backoff.retryAfterCap))
        }
        if entry.refreshAfter {
            entry.refreshAfter = false
            delay = 0
        } else {
            // Measured from the poll's start, so a slow upstream does not stretch the interval.
            delay = max(0, delay - elapsed)
            if entry.job.jitterMilliseconds > 0 { delay += Int64.random(in: 0...entry.job.jitterMilliseconds) }
        }
        observer?(Report(key: entry.key, result: result, milliseconds: elapsed, failures: entry.failures, nextInMilliseconds: delay))
        entry.timer = clock.schedule(afterMilliseconds: delay) { [unowned self] in self.due(entry) }
    }

    private func startWaiting() {
        while running < maxConcurrent, waitingStart < waiting.count {
            let entry = waiting[waitingStart]
            waitingStart += 1
            entry.queued = false
            if entry.stopped { continue }
            if entry.wanted() { send(entry) } else { stop(key: entry.key) }
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
