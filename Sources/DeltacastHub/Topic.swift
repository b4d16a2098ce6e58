public import DeltacastConfig
import DeltacastJSON
import DeltacastLoop
public import DeltacastWire
import Synchronization

/// One concrete resource as the proxy exposes it (DESIGN.md "Topics"): its current state,
/// epoch and seq, the journal of recent changes, and which event loops have subscribers.
/// Thread-safe: every mutable field is read and written under `lock`, and changes are handed
/// to the loops while it is held, so every loop sees a topic's changes in order.
public final class Topic: @unchecked Sendable {
    /// The topic's name (concrete path, normalised query), as clients know it.
    public let name: String
    /// The hub's key for it: the name, plus a credential digest under `auth: passthrough`.
    public let key: String
    /// The endpoint it belongs to (a reload may change its settings, never its path).
    public var endpoint: Configuration.Endpoint { lock.withLock { _ in configured.endpoint } }
    /// The client credentials forwarded upstream (`auth: passthrough`), else empty.
    public let credentials: [(name: String, value: String)]
    /// This topic's history (random, `[a-z0-9]{8}`).
    public let epoch: String
    unowned let hub: Hub
    private let lock = Mutex<Void>(())
    /// The endpoint and the diff options made from it; replaced by ``reconfigure(_:)``.
    private var configured: (endpoint: Configuration.Endpoint, diffOptions: DiffOptions)
    /// Set once ``end(code:message:)`` ran: nobody may subscribe any more.
    private var ended: Change?
    private let usedTick = Atomic<Int64>(0)
    private let activeAt = Atomic<Int64>(0)

    // Guarded by `lock`.
    private var seq = 0
    private var document: JSONValue?
    private var body: [UInt8] = []
    private var contentType = "application/json"
    private var snapshot: Change?
    private var journal: [Change] = []
    private var journalStart = 0
    private var journalBytes = 0
    private var loopCounts: [Int]
    private var problem: UpstreamProblem?
    private var lastChangeAt: Int64 = 0
    /// Subscribers by transport, for the status page.
    private var transportCounts = PerTransport(repeating: 0)
    /// The poller's view: consecutive failures and when the next poll is due (monotonic ms).
    private var pollFailures = 0
    private var nextPollAt: Int64 = 0
    private var lastChangeBytes = 0

    /// When it was last used, in ``Hub/tick()`` units (LRU eviction under `max_topics`).
    var lastUsed: Int64 { usedTick.load(ordering: .relaxed) }

    /// Records a use: by a lookup, a plain GET, a long-poll, a subscribe or an unsubscribe.
    func touch(_ tick: Int64, now: Int64) {
        usedTick.store(tick, ordering: .relaxed)
        activeAt.store(now, ordering: .relaxed)
    }

    /// Whether a polled topic has had no subscriber and no use for its endpoint's `linger`
    /// (publish topics are never idle: they keep their state until evicted by `max_topics`).
    public func isIdle(now: Int64) -> Bool {
        let (source, linger) = lock.withLock { _ in (configured.endpoint.source, configured.endpoint.linger) }
        guard source == .poll, subscriberCount == 0 else { return false }
        return now - activeAt.load(ordering: .relaxed) >= linger.wholeMilliseconds
    }

    init(name: String, key: String, endpoint: Configuration.Endpoint, credentials: [(name: String, value: String)], hub: Hub) {
        self.name = name
        self.key = key
        self.configured = (endpoint, Topic.diffOptions(endpoint))
        self.credentials = credentials
        self.hub = hub
        self.epoch = Topic.randomEpoch()
        self.loopCounts = [Int](repeating: 0, count: hub.loopCount)
    }

    static func diffOptions(_ endpoint: Configuration.Endpoint) -> DiffOptions {
        var options = DiffOptions()
        options.arrayKeys = endpoint.arrayKeys.compactMap { key in (try? JSONPointerPattern(key.path)).map { ($0, key.field) } }
        options.ignore = endpoint.ignore.compactMap { try? JSONPointerPattern($0) }
        return options
    }

    /// A reload changed the endpoint's settings: the next change is diffed with the new ones.
    /// Epoch, journal and state stay.
    public func reconfigure(_ endpoint: Configuration.Endpoint) {
        let options = Topic.diffOptions(endpoint)
        lock.withLock { _ in configured = (endpoint, options) }
    }

    /// Ends the topic (its endpoint is gone): every subscriber gets one `error` event with
    /// `code`, which ends the subscription, and so does anyone who subscribes later.
    public func end(code: DeltacastEvent.ErrorCode, message: String) {
        lock.withLock { _ in
            guard ended == nil else { return }
            let change = hub.makeChange(topic: name, key: key, kind: .error, cursor: nil, base: nil,
                                        event: DeltacastEvent.error(topic: name, code: code, message: message))
            ended = change
            deliverLocked(change)
        }
    }

    static func randomEpoch() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<8).map { _ in alphabet.randomElement()! })
    }

    /// The current state: cursor, stored body and its content type; nil before the first one.
    public func current() -> (cursor: Cursor, body: [UInt8], contentType: String, stale: Bool)? {
        touch(hub.tick(), now: MonotonicClock.milliseconds())
        return lock.withLock { _ in
            seq == 0 || problem?.kind == .forbidden ? nil : (Cursor(epoch: epoch, seq: seq), body, contentType, problem != nil)
        }
    }

    /// A topic's state for the status page and `deltacast top`.
    public struct Status: Sendable {
        /// The current cursor, nil before the first state.
        public var cursor: Cursor?
        /// Subscribers on every loop.
        public var subscribers: Int
        /// Milliseconds since the last change (nil before one).
        public var millisecondsSinceChange: Int64?
        /// The last change's event size in bytes.
        public var lastChangeBytes: Int
        /// The stored body's size in bytes.
        public var bodyBytes: Int
        /// What is wrong upstream, if anything.
        public var problem: UpstreamProblem?
        /// Changes the journal holds.
        public var journalEntries: Int
        /// Subscribers by transport: WebSocket, SSE, long-poll.
        public var byTransport: PerTransport<Int>
        /// Consecutive failed polls (0 when healthy).
        public var pollFailures: Int
        /// Milliseconds until the next poll (nil when not polled).
        public var nextPollIn: Int64?
    }

    /// Records the poller's state after a poll (for the status page): failures in a row and
    /// the delay before the next poll.
    public func recordPoll(failures: Int, nextInMilliseconds: Int64) {
        let due = MonotonicClock.milliseconds() + nextInMilliseconds
        lock.withLock { _ in pollFailures = failures; nextPollAt = due }
    }

    /// This topic's state now.
    public func status() -> Status {
        let now = MonotonicClock.milliseconds()
        return lock.withLock { _ in
            Status(cursor: seq == 0 ? nil : Cursor(epoch: epoch, seq: seq), subscribers: loopCounts.reduce(0, +),
                   millisecondsSinceChange: lastChangeAt == 0 ? nil : now - lastChangeAt, lastChangeBytes: lastChangeBytes,
                   bodyBytes: body.count, problem: problem, journalEntries: journal.count - journalStart,
                   byTransport: transportCounts, pollFailures: pollFailures, nextPollIn: nextPollAt == 0 ? nil : max(0, nextPollAt - now))
        }
    }

    /// What is wrong upstream now, if anything.
    public var upstreamProblem: UpstreamProblem? { lock.withLock { _ in problem } }

    /// The current cursor, nil before the first state.
    public var cursor: Cursor? { lock.withLock { _ in seq == 0 ? nil : Cursor(epoch: epoch, seq: seq) } }

    /// Registers a subscriber on `loop` and returns what it must receive first: nothing when it
    /// is up to date or no state exists yet, exactly the missed changes when the journal still
    /// holds them, else one snapshot (DESIGN.md "Topics"); then the upstream status if stale.
    /// Also returns the topic's cursor at that moment (nil before the first state).
    public func subscribe(loop: Int, since: Cursor?, transport: Transport? = nil) -> (backlog: [Change], cursor: Cursor?) {
        touch(hub.tick(), now: MonotonicClock.milliseconds())
        return lock.withLock { _ in
            loopCounts[loop] += 1
            if let transport { transportCounts[transport] += 1 }
            if let ended { return ([ended], nil) }
            if let problem, problem.kind == .forbidden { return ([problemChange(problem)], nil) }
            var backlog = changesLocked(since: since) ?? []
            if let problem { backlog.append(problemChange(problem)) }
            return (backlog, seq == 0 ? nil : Cursor(epoch: epoch, seq: seq))
        }
    }

    /// Removes a subscriber registered on `loop`.
    public func unsubscribe(loop: Int, transport: Transport? = nil) {
        lock.withLock { _ in
            loopCounts[loop] = max(0, loopCounts[loop] - 1)
            if let transport { transportCounts[transport] = max(0, transportCounts[transport] - 1) }
        }
        touch(hub.tick(), now: MonotonicClock.milliseconds())
    }

    /// Subscribers on every loop together.
    public var subscriberCount: Int { lock.withLock { _ in loopCounts.reduce(0, +) } }

    /// What a client holding `since` has missed (long-poll): nil when nothing is newer (or no
    /// state exists yet), else the missed patches or one snapshot.
    public func changes(since: Cursor?) -> [Change]? {
        touch(hub.tick(), now: MonotonicClock.milliseconds())
        return lock.withLock { _ in problem?.kind == .forbidden ? nil : changesLocked(since: since) }
    }

    private func changesLocked(since: Cursor?) -> [Change]? {
        guard seq > 0 else { return nil }
        if let since, since.epoch == epoch, since.seq <= seq {
            if since.seq == seq { return nil }
            let live = journal[journalStart...]
            if let first = live.first?.cursor, first.seq <= since.seq + 1 {
                return Array(live.drop { $0.cursor!.seq <= since.seq })
            }
        }
        return [snapshotLocked()]
    }

    private func snapshotLocked() -> Change {
        if let snapshot { return snapshot }
        let data: [UInt8]
        if document != nil {
            data = body
        } else {
            var text: [UInt8] = []
            JSONValue.writeString(String(decoding: body, as: UTF8.self), to: &text)
            data = text
        }
        let cursor = Cursor(epoch: epoch, seq: seq)
        let change = hub.makeChange(topic: name, key: key, kind: .snapshot, cursor: cursor, base: nil,
                                    event: DeltacastEvent.snapshot(topic: name, cursor: cursor, data: data))
        snapshot = change
        return change
    }

    /// Why a new state was refused.
    public enum UpdateError: Error, Equatable, CustomStringConvertible {
        /// The body is not valid JSON for a JSON content type.
        case invalidJSON(String)
        /// What is wrong.
        public var description: String {
            switch self { case .invalidJSON(let message): "body is not valid JSON: \(message)" }
        }
    }

    /// The outcome of an update.
    public enum UpdateOutcome: Equatable {
        /// A new state: its cursor.
        case changed(Cursor)
        /// Nothing a client can see changed (identical bytes, or only ignored fields).
        case unchanged(Cursor)
    }

    /// Takes a new full body (from a poll or a publish), diffs it against the stored one and
    /// hands the change to every loop with subscribers. JSON content types must parse; others
    /// travel as snapshots whose `data` is a string.
    @discardableResult
    public func update(body newBody: [UInt8], contentType newType: String) throws(UpdateError) -> UpdateOutcome {
        // A byte-identical body costs no parse and no diff.
        let identical = lock.withLock { _ in seq > 0 && newBody == body && newType == contentType }
        if identical, let cursor {
            hub.statistics.unchanged.add(1, ordering: .relaxed)
            upstreamRecovered()
            return .unchanged(cursor)
        }
        let isJSON = Topic.isJSON(contentType: newType)
        var parsed: JSONValue?
        if isJSON {
            do { parsed = try JSONParser.parse(newBody) } catch { throw .invalidJSON(error.description) }
        }
        return lock.withLock { _ -> UpdateOutcome in
            recoveredLocked()
            if seq > 0 && newBody == body && newType == contentType {
                hub.statistics.unchanged.add(1, ordering: .relaxed)
                return .unchanged(Cursor(epoch: epoch, seq: seq))
            }
            let base = Cursor(epoch: epoch, seq: seq)
            var patchBytes: [UInt8]?
            var merge = false
            // Snapshot mode with nothing ignored: differing bytes are the change; no diff.
            let (endpoint, diffOptions) = configured
            let needsDiff = endpoint.diff != .snapshot || !diffOptions.ignore.isEmpty
            if needsDiff, seq > 0, let old = document, let new = parsed {
                let started = MonotonicClock.nanoseconds()
                let result = JSONDiff.diff(old, new, options: diffOptions)
                hub.statistics.diffSeconds.observe(Double(MonotonicClock.nanoseconds() - started) / 1e9)
                if !result.isChange { hub.statistics.unchanged.add(1, ordering: .relaxed); return .unchanged(base) }
                switch endpoint.diff {
                case .jsonPatch:
                    let bytes = JSONPatch.serialized(result.operations)
                    if bytes.count < newBody.count { patchBytes = bytes }
                case .mergePatch:
                    if let mergePatch = JSONMergePatch.diff(old, new) {
                        let bytes = mergePatch.serialized()
                        if bytes.count < newBody.count { patchBytes = bytes; merge = true }
                    }
                case .snapshot:
                    break
                }
            }
            seq += 1
            document = parsed
            body = newBody
            contentType = newType
            snapshot = nil
            let cursor = Cursor(epoch: epoch, seq: seq)
            let change: Change
            if let patchBytes {
                change = hub.makeChange(topic: name, key: key, kind: .patch, cursor: cursor, base: base,
                                        event: DeltacastEvent.patch(topic: name, cursor: cursor, base: base, patch: patchBytes, merge: merge))
            } else {
                change = snapshotLocked()
            }
            appendToJournal(change)
            deliverLocked(change)
            lastChangeAt = MonotonicClock.milliseconds()
            lastChangeBytes = change.event.count
            let statistics = hub.statistics
            if change.kind == .patch {
                statistics.patches.add(1, ordering: .relaxed)
                statistics.patchBytes.observe(Double(change.event.count))
                let subscribers = loopCounts.reduce(0, +)
                statistics.bytesSaved.add(max(0, newBody.count - change.event.count) * subscribers, ordering: .relaxed)
            } else {
                statistics.snapshots.add(1, ordering: .relaxed)
                statistics.snapshotBytes.observe(Double(change.event.count))
            }
            return .changed(cursor)
        }
    }

    /// Records an upstream failure; the state stays. Subscribers get a `status` event with
    /// `stale: true` when the upstream starts failing, or, for `forbidden` (passthrough 401/403),
    /// an `error` event that ends their subscription.
    public func upstreamFailed(_ new: UpstreamProblem) {
        lock.withLock { _ in
            let previous = problem
            problem = new
            if new.kind == .forbidden {
                if previous?.kind != .forbidden { deliverLocked(problemChange(new)) }
            } else if previous == nil || previous?.kind == .forbidden {
                deliverLocked(problemChange(new))
            }
        }
    }

    /// The upstream answered well again (a 304, or the same body): clears the problem and tells
    /// subscribers (`status` with `upstream: ok`).
    public func upstreamRecovered() {
        lock.withLock { _ in recoveredLocked() }
    }

    private func recoveredLocked() {
        guard problem != nil else { return }
        problem = nil
        deliverLocked(hub.makeChange(topic: name, key: key, kind: .status, cursor: nil, base: nil,
                                     event: DeltacastEvent.status(topic: name, error: nil)))
    }

    private func problemChange(_ problem: UpstreamProblem) -> Change {
        if problem.kind == .forbidden {
            return hub.makeChange(topic: name, key: key, kind: .error, cursor: nil, base: nil,
                                  event: DeltacastEvent.error(topic: name, code: .forbidden, message: problem.message))
        }
        return hub.makeChange(topic: name, key: key, kind: .status, cursor: nil, base: nil,
                              event: DeltacastEvent.status(topic: name, error: (problem.http, problem.message)))
    }

    private func appendToJournal(_ change: Change) {
        journal.append(change)
        journalBytes += change.event.count
        let limits = hub.limits
        while journal.count - journalStart > limits.journalEntries || (journalBytes > limits.journalBytes && journal.count - journalStart > 1) {
            journalBytes -= journal[journalStart].event.count
            journalStart += 1
        }
        if journalStart > 64 && journalStart * 2 > journal.count {
            journal.removeFirst(journalStart)
            journalStart = 0
        }
    }

    /// Journal entries held now (tests and metrics).
    public var journalCount: Int { lock.withLock { _ in journal.count - journalStart } }

    private func deliverLocked(_ change: Change) {
        for (loop, count) in loopCounts.enumerated() where count > 0 { hub.deliver(loop, change) }
    }

    /// Whether a content type is JSON (`application/json`, `*/*+json`, or none given).
    public static func isJSON(contentType: String) -> Bool {
        let type = contentType.prefix { $0 != ";" }.lowercased().filter { $0 != " " }
        return type.isEmpty || type == "application/json" || type.hasSuffix("+json")
    }
}

/// Why a topic's upstream gives no fresh state.
public struct UpstreamProblem: Sendable, Equatable {
    /// The kind of failure.
    public enum Kind: Sendable, Equatable {
        /// A non-2xx status.
        case status
        /// No answer within `upstream.timeout`.
        case timeout
        /// Connection refused, unreachable, reset, or a body over `max_body`.
        case transport
        /// A body that is not valid JSON for a JSON content type.
        case invalidBody
        /// `401`/`403` under `auth: passthrough`: this credential may not see the resource.
        case forbidden
    }
    /// The kind.
    public var kind: Kind
    /// The upstream's HTTP status, when it answered.
    public var http: Int?
    /// What happened, for status events and error bodies.
    public var message: String

    /// Creates a problem.
    public init(kind: Kind, http: Int?, message: String) {
        self.kind = kind
        self.http = http
        self.message = message
    }

    /// The status a plain GET gets while no good state exists (DESIGN.md "Before the first
    /// poll"): the upstream's own 401/403 for `forbidden`, 504 for a timeout, else 502.
    public var responseStatus: Int {
        switch kind {
        case .forbidden: http ?? 403
        case .timeout: 504
        default: 502
        }
    }
}
