import DeltacastBase
public import DeltacastConfig
import DeltacastCrypto
public import DeltacastJSON
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
    /// The endpoint it belongs to (a reload may change its settings, never its path). A copy
    /// taken under the topic's lock: hot paths that need only the pattern read ``pattern``.
    public var endpoint: Configuration.Endpoint { lock.withLock { _ in configured.endpoint } }
    /// Whether its endpoint polls at an adaptive interval (read without copying the endpoint).
    public var pollsAdaptively: Bool { lock.withLock { _ in configured.endpoint.adaptiveInterval != nil } }
    /// Its endpoint's path pattern (`/api/users/{id}/notifications`), the label of its metrics.
    public let pattern: String
    /// What it cost its upstream and gave its clients (the migration report).
    public let savings = TopicSavings()
    /// The client credentials forwarded upstream (`auth: passthrough`), else empty.
    public let credentials: [(name: String, value: String)]
    /// This topic's history (random, `[a-z0-9]{8}`; in cluster mode, the cluster's).
    public var epoch: String { lock.withLock { _ in versions.currentEpoch } }
    unowned let hub: Hub
    private let lock = Locked<Void>(())
    /// The endpoint and the diff options made from it; replaced by ``reconfigure(_:)``.
    private var configured: (endpoint: Configuration.Endpoint, diffOptions: DiffOptions)
    /// When it was last used and active: read without the lock.
    private let activity = TopicActivity()

    // Guarded by `lock`.
    /// The document, its epoch and seq, the journal of its changes.
    private var versions: VersionedState
    /// Who subscribes, on which loop and by which transport, and for how long.
    private var audience: Audience
    /// What is wrong upstream, and the poller's schedule.
    private var upstream = UpstreamHealth()
    /// Cluster mode: whether Redis is reachable and the shared state was read.
    private var cluster: ClusterSync

    /// When it was last used, in ``Hub/tick()`` units (LRU eviction under `max_topics`).
    var lastUsed: Int64 { activity.usedTick.load(ordering: .relaxed) }

    /// Records a use: by a lookup, a plain GET, a long-poll, a subscribe or an unsubscribe.
    func touch(_ tick: Int64, now: Int64) {
        activity.usedTick.store(tick, ordering: .relaxed)
        activity.activeAt.store(now, ordering: .relaxed)
    }

    /// Whether a polled topic has had no subscriber and no use for its endpoint's `linger`
    /// (publish topics are never idle: they keep their state until evicted by `max_topics`).
    public func isIdle(now: Int64) -> Bool {
        let (source, linger) = lock.withLock { _ in (configured.endpoint.source, configured.endpoint.linger) }
        guard source == .poll, subscriberCount == 0 else { return false }
        return now - activity.activeAt.load(ordering: .relaxed) >= linger.wholeMilliseconds
    }

    init(name: String, key: String, endpoint: Configuration.Endpoint, credentials: [(name: String, value: String)], hub: Hub) {
        self.name = name
        self.key = key
        self.pattern = endpoint.path.text
        self.configured = (endpoint, Topic.diffOptions(endpoint))
        self.credentials = credentials
        self.hub = hub
        self.versions = VersionedState(epoch: Topic.randomEpoch())
        self.audience = Audience(loops: hub.loopCount)
        self.cluster = ClusterSync(loaded: hub.replication == nil)
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
        lock.withLock { _ in
            if endpoint.digest != configured.endpoint.digest { versions.forgetPrepared() }
            configured = (endpoint, options)
        }
    }

    /// Ends the topic (its endpoint is gone): every subscriber gets one `error` event with
    /// `code`, which ends the subscription, and so does anyone who subscribes later.
    public func end(code: DeltacastEvent.ErrorCode, message: String) {
        lock.withLock { _ in
            guard versions.ended == nil else { return }
            let change = hub.makeChange(topic: name, key: key, kind: .error, cursor: nil, base: nil,
                                        event: DeltacastEvent.error(topic: name, code: code, message: message))
            versions.ended = change
            deliverLocked(change)
        }
    }

    public static func randomEpoch() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<8).map { _ in alphabet.randomElement()! })
    }

    /// The current state: cursor, stored body and its content type; nil before the first one.
    public func current() -> (cursor: Cursor, body: [UInt8], contentType: String, stale: Bool)? {
        touch(hub.tick(), now: hub.clock.milliseconds)
        return lock.withLock { _ in
            versions.seq == 0 || upstream.problem?.kind == .forbidden ? nil : (versions.cursor, versions.body, versions.contentType, upstream.problem != nil)
        }
    }

    /// The current body, for inferring the topic's type (not a use of the topic); nil before
    /// the first state or while the upstream refuses the credential.
    public func currentBodyForTypes() -> [UInt8]? {
        lock.withLock { _ in versions.seq == 0 || upstream.problem?.kind == .forbidden ? nil : versions.body }
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
        let due = hub.clock.milliseconds + nextInMilliseconds
        lock.withLock { _ in upstream.pollFailures = failures; upstream.nextPollAt = due }
    }

    /// This topic's state now.
    public func status() -> Status {
        let now = hub.clock.milliseconds
        return lock.withLock { _ in
            Status(cursor: versions.seq == 0 ? nil : versions.cursor, subscribers: audience.loopCounts.reduce(0, +),
                   millisecondsSinceChange: versions.lastChangeAt == 0 ? nil : now - versions.lastChangeAt, lastChangeBytes: versions.lastChangeBytes,
                   bodyBytes: versions.body.count, problem: upstream.problem, journalEntries: versions.journal.count,
                   byTransport: audience.transportCounts, pollFailures: upstream.pollFailures, nextPollIn: upstream.nextPollAt == 0 ? nil : max(0, upstream.nextPollAt - now))
        }
    }

    /// What is wrong upstream now, if anything.
    public var upstreamProblem: UpstreamProblem? { lock.withLock { _ in upstream.problem } }

    /// The current cursor, nil before the first state.
    public var cursor: Cursor? { lock.withLock { _ in versions.seq == 0 ? nil : versions.cursor } }

    /// Registers a subscriber on `loop` and returns what it must receive first: nothing when it
    /// is up to date or no state exists yet, exactly the missed changes when the journal still
    /// holds them, else one snapshot (DESIGN.md "Topics"); then the upstream status if stale.
    /// Also returns the topic's cursor at that moment (nil before the first state).
    public func subscribe(loop: Int, since: Cursor?, transport: Transport? = nil) -> (backlog: [Change], cursor: Cursor?) {
        let now = hub.clock.milliseconds
        touch(hub.tick(), now: now)
        return lock.withLock { _ in
            accrueSubscriberTime(now)
            audience.loopCounts[loop] += 1
            if let transport { audience.transportCounts[transport] += 1 }
            if let ended = versions.ended { return ([ended], nil) }
            if let problem = upstream.problem, problem.kind == .forbidden { return ([problemChange(problem)], nil) }
            var backlog = changesLocked(since: since).map(Array.init) ?? []
            if let problem = upstream.problem { backlog.append(problemChange(problem)) }
            if cluster.clusterUnavailable { backlog.append(clusterChange(available: false)) }
            return (backlog, versions.seq == 0 ? nil : versions.cursor)
        }
    }

    /// Removes a subscriber registered on `loop`.
    public func unsubscribe(loop: Int, transport: Transport? = nil) {
        let now = hub.clock.milliseconds
        lock.withLock { _ in
            accrueSubscriberTime(now)
            audience.loopCounts[loop] = max(0, audience.loopCounts[loop] - 1)
            if let transport { audience.transportCounts[transport] = max(0, audience.transportCounts[transport] - 1) }
        }
        touch(hub.tick(), now: now)
    }

    /// Adds the time since the subscriber count last changed, times that count.
    private func accrueSubscriberTime(_ now: Int64) {
        let subscribers = audience.loopCounts.reduce(0, +)
        if subscribers > 0 { audience.subscriberTime.total += Int64(subscribers) * max(0, now - audience.subscriberTime.since) }
        audience.subscriberTime.since = now
    }

    /// Its migration report numbers, subscriber time counted up to now.
    public func savingsCounts() -> SavingsCounts {
        let now = hub.clock.milliseconds
        return lock.withLock { _ in
            let subscribers = Int64(audience.loopCounts.reduce(0, +))
            return savings.counts(subscriberMilliseconds: audience.subscriberTime.total + subscribers * max(0, now - audience.subscriberTime.since))
        }
    }

    /// Subscribers on every loop together.
    public var subscriberCount: Int { lock.withLock { _ in audience.loopCounts.reduce(0, +) } }

    /// What a client holding `since` has missed (long-poll): nil when nothing is newer (or no
    /// state exists yet), else the missed patches or one snapshot. A slice of the journal (or
    /// of a one-element array): a long-poll reads it at once, with no copy of its own.
    public func changes(since: Cursor?) -> ArraySlice<Change>? {
        touch(hub.tick(), now: hub.clock.milliseconds)
        return lock.withLock { _ in upstream.problem?.kind == .forbidden ? nil : changesLocked(since: since) }
    }

    // MARK: Catching up (cluster mode)

    /// Readers that may wait for one catch-up; past it, a reader is served what this node
    /// holds (a snapshot) without waiting.
    public static let maximumCatchUpWaiters = 10_000

    /// Cluster mode: whether a reader holding `since` must wait for the shared state before it
    /// is served: the topic is still loading, or `since` is of this epoch and past this node's
    /// seq (issued by a node that is ahead). Always false for one process.
    public func needsCatchUp(since: Cursor?) -> Bool {
        guard hub.replication != nil else { return false }
        return lock.withLock { _ in
            if !cluster.loaded { return true }
            guard let since else { return false }
            return since.epoch == versions.currentEpoch && since.seq > versions.seq
        }
    }

    /// Cluster mode: reads the shared state, then calls `resume` (on the cluster's thread, after
    /// what the read brought was handed to the loops). Readers without a cursor share the read
    /// in flight; a reader with one waits for a read that starts after it asked. Returns at once.
    public func catchUp(since: Cursor?, then resume: @escaping @Sendable () -> Void) {
        guard let replication = hub.replication else { return resume() }
        enum Step { case start, wait, serveNow }
        let step = lock.withLock { _ -> Step in
            guard cluster.catchUpWaiters != nil else { cluster.catchUpWaiters = [resume]; return .start }
            if cluster.catchUpWaiters!.count + cluster.nextCatchUpWaiters.count >= Topic.maximumCatchUpWaiters { return .serveNow }
            if since == nil { cluster.catchUpWaiters!.append(resume) } else { cluster.nextCatchUpWaiters.append(resume) }
            return .wait
        }
        switch step {
        case .start: replication.catchUp(self) { [self] in caughtUp() }
        case .wait: break
        case .serveNow: resume()
        }
    }

    /// A catch-up ended: its waiters go on, and the next one starts if readers wait for it.
    private func caughtUp() {
        let (waiting, again) = lock.withLock { _ -> ([@Sendable () -> Void], Bool) in
            cluster.loaded = true
            let waiting = cluster.catchUpWaiters ?? []
            if cluster.nextCatchUpWaiters.isEmpty {
                cluster.catchUpWaiters = nil
                return (waiting, false)
            }
            cluster.catchUpWaiters = cluster.nextCatchUpWaiters
            cluster.nextCatchUpWaiters = []
            return (waiting, true)
        }
        for resume in waiting { resume() }
        if again, let replication = hub.replication { replication.catchUp(self) { [self] in caughtUp() } }
    }

    private func changesLocked(since: Cursor?) -> ArraySlice<Change>? {
        switch versions.resume(since: since) {
        case .upToDate: nil
        case .missed(let changes): changes
        case .snapshot: [snapshotLocked()][...]
        }
    }

    private func snapshotLocked() -> Change {
        if let snapshot = versions.snapshot { return snapshot }
        let data = Topic.snapshotData(versions.body, json: versions.document != nil)
        let cursor = versions.cursor
        let change = hub.makeChange(topic: name, key: key, kind: .snapshot, cursor: cursor, base: nil,
                                    event: DeltacastEvent.snapshot(topic: name, cursor: cursor, data: data, digest: digestLocked()), stateBytes: versions.body.count)
        versions.snapshot = change
        return change
    }

    /// Why a new state was refused.
    public enum UpdateError: Error, Equatable, Sendable, CustomStringConvertible {
        /// The body is not valid JSON for a JSON content type.
        case invalidJSON(String)
        /// Cluster mode: the change could not be committed (Redis unreachable); nothing changed.
        case clusterUnavailable(String)
        /// What is wrong.
        public var description: String {
            switch self {
            case .invalidJSON(let message): "body is not valid JSON: \(message)"
            case .clusterUnavailable(let message): "the cluster's shared history cannot be written: \(message)"
            }
        }
    }

    /// The outcome of an update.
    public enum UpdateOutcome: Equatable, Sendable {
        /// A new state: its cursor.
        case changed(Cursor)
        /// Nothing a client can see changed (identical bytes, or only ignored fields).
        case unchanged(Cursor)
    }

    /// What ``update(body:contentType:whenCommitted:)`` did.
    public enum UpdateProgress {
        /// Done: the outcome (one process, or a body refused before anything was committed).
        case finished(Result<UpdateOutcome, UpdateError>)
        /// Cluster mode: the commit is under way; `whenCommitted` hears its outcome.
        case committing
    }

    /// Takes a new full body (a poll's or a publish's) in either mode. One process: as
    /// ``update(body:contentType:)``, at once. Cluster mode: the body is parsed here and the
    /// change committed to the shared history without waiting; it reaches this topic (and every
    /// other node's) from there, and `whenCommitted` is called on the cluster's thread.
    public func update(body newBody: [UInt8], contentType newType: String,
                       whenCommitted: @escaping @Sendable (Result<UpdateOutcome, UpdateError>) -> Void) -> UpdateProgress {
        guard let replication = hub.replication else {
            do { return .finished(.success(try update(body: newBody, contentType: newType))) } catch { return .finished(.failure(error)) }
        }
        var parsed: JSONDocument?
        if Topic.isJSON(contentType: newType) {
            do { parsed = try JSONDocument(parsing: newBody) } catch { return .finished(.failure(.invalidJSON(error.description))) }
        }
        replication.update(self, parsed: parsed, body: newBody, contentType: newType, completion: whenCommitted)
        return .committing
    }

    /// Takes a new full body (from a poll or a publish), diffs it against the stored one and
    /// hands the change to every loop with subscribers. JSON content types must parse; others
    /// travel as snapshots whose `data` is a string. One process only: in cluster mode a change
    /// must be committed first (``update(body:contentType:whenCommitted:)``), and this refuses.
    @discardableResult
    public func update(body newBody: [UInt8], contentType newType: String) throws(UpdateError) -> UpdateOutcome {
        guard hub.replication == nil else {
            throw .clusterUnavailable("in cluster mode a change is committed to Redis first: use update(body:contentType:whenCommitted:)")
        }
        // A byte-identical body costs no parse and no diff.
        let identical = lock.withLock { _ in versions.holds(newBody, contentType: newType) }
        if identical, let cursor {
            hub.statistics.unchanged.add(1, ordering: .relaxed)
            upstreamRecovered()
            return .unchanged(cursor)
        }
        let isJSON = Topic.isJSON(contentType: newType)
        var parsed: JSONDocument?
        if isJSON {
            do { parsed = try JSONDocument(parsing: newBody) } catch { throw .invalidJSON(error.description) }
        }
        return lock.withLock { _ -> UpdateOutcome in
            _ = recoveredLocked()
            if versions.holds(newBody, contentType: newType) {
                hub.statistics.unchanged.add(1, ordering: .relaxed)
                return .unchanged(versions.cursor)
            }
            var patchBytes: [UInt8]?
            var merge = false
            switch diffLocked(parsed, newBody: newBody) {
            case .unchanged:
                hub.statistics.unchanged.add(1, ordering: .relaxed)
                return .unchanged(versions.cursor)
            case .patch(let bytes, let isMerge):
                patchBytes = bytes
                merge = isMerge
            case .snapshot:
                break
            }
            let (base, cursor) = versions.advance(document: parsed, body: newBody, contentType: newType)
            let change: Change
            if let patchBytes {
                change = hub.makeChange(topic: name, key: key, kind: .patch, cursor: cursor, base: base,
                                        event: DeltacastEvent.patch(topic: name, cursor: cursor, base: base, patch: patchBytes, merge: merge, digest: digestLocked()),
                                        stateBytes: newBody.count)
            } else {
                change = snapshotLocked()
            }
            appendToJournal(change)
            deliverLocked(change)
            versions.lastChangeAt = hub.clock.milliseconds
            versions.lastChangeBytes = change.event.count
            let statistics = hub.statistics
            if change.kind == .patch {
                statistics.patches.add(1, ordering: .relaxed)
                statistics.patchBytes.observe(Double(change.event.count))
                let subscribers = audience.loopCounts.reduce(0, +)
                statistics.bytesSaved.add(max(0, newBody.count - change.event.count) * subscribers, ordering: .relaxed)
            } else {
                statistics.snapshots.add(1, ordering: .relaxed)
                statistics.snapshotBytes.observe(Double(change.event.count))
            }
            return .changed(cursor)
        }
    }

    // MARK: Cluster mode

    /// A change computed against the current state and not applied: cluster mode commits it
    /// to the shared history, and every node applies it from there (``replicate(epoch:seq:body:contentType:entries:)``).
    public struct PreparedChange: Sendable {
        /// The state it follows (seq 0: none).
        public let base: Cursor
        /// The state it makes.
        public let cursor: Cursor
        /// Its event (a patch, or a snapshot), as every subscriber will receive it.
        public let event: [UInt8]
        public let body: [UInt8]
        public let contentType: String
    }

    /// ``prepare(parsed:body:contentType:newEpoch:)`` for a body not parsed yet.
    public func prepare(body newBody: [UInt8], contentType newType: String, newEpoch: String? = nil) throws(UpdateError) -> PreparedChange? {
        var parsed: JSONDocument?
        if Topic.isJSON(contentType: newType) {
            do { parsed = try JSONDocument(parsing: newBody) } catch { throw .invalidJSON(error.description) }
        }
        return prepare(parsed: parsed, body: newBody, contentType: newType, newEpoch: newEpoch)
    }

    /// Diffs `newBody` (`parsed`, when it is JSON) against the current state like
    /// ``update(body:contentType:)`` but changes nothing: nil when nothing a client can see
    /// would change. `epoch` replaces the topic's (a history that vanished from the cluster
    /// starts afresh with a snapshot at seq 1).
    public func prepare(parsed: JSONDocument?, body newBody: [UInt8], contentType newType: String, newEpoch: String? = nil) -> PreparedChange? {
        lock.withLock { _ -> PreparedChange? in
            let digest = configured.endpoint.digest ? Topic.digest(parsed, body: newBody) : nil
            if let newEpoch {
                let cursor = Cursor(epoch: newEpoch, seq: 1)
                return PreparedChange(base: Cursor(epoch: newEpoch, seq: 0), cursor: cursor,
                                      event: DeltacastEvent.snapshot(topic: name, cursor: cursor, data: Topic.snapshotData(newBody, json: parsed != nil), digest: digest),
                                      body: newBody, contentType: newType)
            }
            if versions.holds(newBody, contentType: newType) { return nil }
            return versions.prepared(diffLocked(parsed, newBody: newBody), topic: name, json: parsed != nil, body: newBody, contentType: newType, digest: digest)
        }
    }

    /// What applying the shared history did.
    public enum Replication: Equatable, Sendable {
        /// Already at that state.
        case current
        /// The entries were applied in order (how many).
        case applied(Int)
        /// The history could not be followed (another epoch, or a gap the entries do not
        /// cover): the topic jumped to the state, and subscribers got one snapshot.
        case reset
        /// The shared seq is behind this topic's in the same epoch (an old Redis snapshot was
        /// reloaded): nothing was applied. The caller rotates the epoch: a reused seq must never
        /// reach a client as a patch.
        case wentBackwards
    }

    /// Applies the cluster's state: the journal `entries` after this topic's seq (each a seq
    /// and its event bytes, in order), then the stored `body` at `seq` of `epoch`.
    public func replicate(epoch: String, seq newSeq: Int, body newBody: [UInt8]?, contentType newType: String, entries: [(seq: Int, event: [UInt8])]) -> Replication {
        var parsed: JSONDocument?
        if let newBody, Topic.isJSON(contentType: newType) { parsed = try? JSONDocument(parsing: newBody) }
        return lock.withLock { _ -> Replication in
            if epoch == versions.currentEpoch && newSeq == versions.seq { return .current }
            if epoch == versions.currentEpoch && newSeq < versions.seq { return .wentBackwards }
            let follows = epoch == versions.currentEpoch && versions.seq > 0 && entries.first?.seq == versions.seq + 1 && entries.last?.seq == newSeq
                && zip(entries, entries.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq }
            if follows {
                for entry in entries {
                    let isPatch = entry.event.starts(with: Array(#"{"type":"patch""#.utf8))
                    let cursor = Cursor(epoch: epoch, seq: entry.seq)
                    let change = hub.makeChange(topic: name, key: key, kind: isPatch ? .patch : .snapshot, cursor: cursor,
                                                base: isPatch ? Cursor(epoch: epoch, seq: entry.seq - 1) : nil, event: entry.event,
                                                stateBytes: newBody?.count ?? versions.body.count)   // the last state's size stands for each step's
                    versions.seq = entry.seq
                    appendToJournal(change)
                    deliverLocked(change)
                    versions.lastChangeAt = hub.clock.milliseconds
                    versions.lastChangeBytes = change.event.count
                }
                if let newBody { versions.take(document: parsed, body: newBody, contentType: newType) } else { versions.forgetPrepared() }
                return .applied(entries.count)
            }
            guard let newBody else { return .current }   // nothing to jump to
            versions.jump(epoch: epoch, seq: newSeq, document: parsed, body: newBody, contentType: newType)
            // The shared journal's entries that end at this state become this node's journal:
            // a client resuming here gets exactly its missed patches.
            let usable = entries.last?.seq == newSeq && zip(entries, entries.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq }
            if usable {
                for entry in entries where entry.seq > 0 {
                    let isPatch = entry.event.starts(with: Array(#"{"type":"patch""#.utf8))
                    appendToJournal(hub.makeChange(topic: name, key: key, kind: isPatch ? .patch : .snapshot, cursor: Cursor(epoch: epoch, seq: entry.seq),
                                                   base: isPatch ? Cursor(epoch: epoch, seq: entry.seq - 1) : nil, event: entry.event))
                }
            }
            let change = snapshotLocked()
            deliverLocked(change)
            versions.lastChangeAt = hub.clock.milliseconds
            versions.lastChangeBytes = change.event.count
            return .reset
        }
    }

    /// Cluster mode: whether Redis can be reached. Subscribers get one `status` event per
    /// change of it (`"cluster":"unavailable"`, then `"cluster":"ok"`).
    public func setClusterAvailable(_ available: Bool) {
        lock.withLock { _ in
            guard cluster.clusterUnavailable == available else { return }
            cluster.clusterUnavailable = !available
            deliverLocked(clusterChange(available: available))
        }
    }

    private func clusterChange(available: Bool) -> Change {
        hub.makeChange(topic: name, key: key, kind: .status, cursor: nil, base: nil, event: DeltacastEvent.clusterStatus(topic: name, available: available))
    }

    /// The current document's digest when the endpoint asks for one (under the lock).
    private func digestLocked() -> String? {
        guard configured.endpoint.digest, versions.seq > 0 else { return nil }
        if let digest = versions.currentDigest { return digest }
        let digest = Topic.digest(versions.document, body: versions.body)
        versions.currentDigest = digest
        return digest
    }

    /// SHA-256 (hex) of the RFC 8785 form of what a client holds for this body: the document,
    /// or for a non-JSON body the string it travels as.
    public static func digest(_ document: JSONDocument?, body: [UInt8]) -> String {
        let value = document?.value ?? .string(String(decoding: body, as: UTF8.self))
        return Hex.encode(SHA256.digest(value.canonicalized()))
    }

    /// A snapshot's `data`: the body itself when it is JSON, else the body as a JSON string.
    static func snapshotData(_ body: [UInt8], json: Bool) -> [UInt8] {
        if json { return body }
        var text: [UInt8] = []
        JSONValue.writeString(String(decoding: body, as: UTF8.self), to: &text)
        return text
    }

    /// The change from the stored document to `new` (under the lock); a diff that runs is
    /// timed for `/metrics`.
    private func diffLocked(_ new: JSONDocument?, newBody: [UInt8]) -> VersionedState.Diffed {
        let (endpoint, options) = configured
        guard versions.diffs(to: new, endpoint: endpoint, options: options) else { return .snapshot }
        let started = MonotonicClock.nanoseconds()
        defer { hub.statistics.diffSeconds.observe(Double(MonotonicClock.nanoseconds() - started) / 1e9) }
        return versions.diff(to: new, body: newBody, endpoint: endpoint, options: options)
    }

    /// Records an upstream failure; the state stays. Subscribers get a `status` event with
    /// `stale: true` when the upstream starts failing, or, for `forbidden` (passthrough 401/403),
    /// an `error` event that ends their subscription.
    public func upstreamFailed(_ new: UpstreamProblem) {
        if applyProblem(new) { hub.replication?.upstreamChanged(self, problem: new) }
    }

    /// The upstream answered well again (a 304, or the same body): clears the problem and tells
    /// subscribers (`status` with `upstream: ok`).
    /// The upstream answered well: a problem it had is over. True when there was one.
    @discardableResult
    public func upstreamRecovered() -> Bool {
        guard lock.withLock({ _ in recoveredLocked() }) else { return false }
        hub.replication?.upstreamChanged(self, problem: nil)
        return true
    }

    /// Cluster mode: the upstream's state as the polling node found it (nil: well). Subscribers
    /// here are told as if this node had polled; nothing is sent back to the cluster.
    public func replicateProblem(_ new: UpstreamProblem?) {
        if let new { _ = applyProblem(new) } else { lock.withLock { _ in _ = recoveredLocked() } }
    }

    /// Records `new`; true when subscribers were told (the upstream began failing, or began or
    /// stopped refusing the credential), which is when the cluster is told too.
    private func applyProblem(_ new: UpstreamProblem) -> Bool {
        lock.withLock { _ in
            let previous = upstream.problem
            upstream.problem = new
            if new.kind == .forbidden {
                if previous?.kind != .forbidden { deliverLocked(problemChange(new)); return true }
            } else if previous == nil || previous?.kind == .forbidden {
                deliverLocked(problemChange(new))
                return true
            }
            return false
        }
    }

    /// Clears the problem (under the lock); true when there was one.
    private func recoveredLocked() -> Bool {
        guard upstream.problem != nil else { return false }
        upstream.problem = nil
        deliverLocked(hub.makeChange(topic: name, key: key, kind: .status, cursor: nil, base: nil,
                                     event: DeltacastEvent.status(topic: name, error: nil)))
        return true
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
        let limits = hub.limits
        versions.journal.append(change, maxEntries: limits.journalEntries, maxBytes: limits.journalBytes)
    }

    /// Journal entries held now (tests and metrics).
    public var journalCount: Int { lock.withLock { _ in versions.journal.count } }
    /// Changes the journal's storage still references, trimmed ones included (tests).
    var journalStorageCount: Int { lock.withLock { _ in versions.journal.storageCount } }

    private func deliverLocked(_ change: Change) {
        var subscribers = 0
        for (loop, count) in audience.loopCounts.enumerated() where count > 0 {
            hub.delivery.deliver(change, toLoop: loop)
            subscribers += count
        }
        if subscribers > 0 { savings.pushed(subscribers: subscribers, bytes: change.event.count, full: change.stateBytes) }
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
