public import DeltacastConfig
import DeltacastJSON
public import DeltacastWire
import Synchronization

/// One concrete resource as the proxy exposes it (DESIGN.md "Topics"): its current state,
/// epoch and seq, the journal of recent changes, and which event loops have subscribers.
/// Thread-safe: every mutable field is read and written under `lock`, and changes are handed
/// to the loops while it is held, so every loop sees a topic's changes in order.
public final class Topic: @unchecked Sendable {
    /// The topic's name (concrete path, normalised query).
    public let name: String
    /// The endpoint it belongs to.
    public let endpoint: Configuration.Endpoint
    /// This topic's history (random, `[a-z0-9]{8}`).
    public let epoch: String
    unowned let hub: Hub
    private let lock = Mutex<Void>(())
    private let diffOptions: DiffOptions

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
    private var upstreamError: (http: Int?, message: String)?
    /// When it was last used, in ``Hub/tick()`` units (LRU eviction).
    var lastUsed: Int64 = 0

    init(name: String, endpoint: Configuration.Endpoint, hub: Hub) {
        self.name = name
        self.endpoint = endpoint
        self.hub = hub
        self.epoch = Topic.randomEpoch()
        self.loopCounts = [Int](repeating: 0, count: hub.loopCount)
        var options = DiffOptions()
        options.arrayKeys = endpoint.arrayKeys.compactMap { key in (try? JSONPointerPattern(key.path)).map { ($0, key.field) } }
        options.ignore = endpoint.ignore.compactMap { try? JSONPointerPattern($0) }
        self.diffOptions = options
    }

    static func randomEpoch() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<8).map { _ in alphabet.randomElement()! })
    }

    /// The current state: cursor, stored body and its content type; nil before the first one.
    public func current() -> (cursor: Cursor, body: [UInt8], contentType: String, stale: Bool)? {
        lock.withLock { _ in
            seq == 0 ? nil : (Cursor(epoch: epoch, seq: seq), body, contentType, upstreamError != nil)
        }
    }

    /// The current cursor, nil before the first state.
    public var cursor: Cursor? { lock.withLock { _ in seq == 0 ? nil : Cursor(epoch: epoch, seq: seq) } }

    /// Registers a subscriber on `loop` and returns what it must receive first: nothing when it
    /// is up to date or no state exists yet, exactly the missed changes when the journal still
    /// holds them, else one snapshot (DESIGN.md "Topics"); then the upstream status if stale.
    /// Also returns the topic's cursor at that moment (nil before the first state).
    public func subscribe(loop: Int, since: Cursor?) -> (backlog: [Change], cursor: Cursor?) {
        lock.withLock { _ in
            loopCounts[loop] += 1
            lastUsed = hub.tick()
            var backlog = changesLocked(since: since) ?? []
            if let upstreamError { backlog.append(statusChange(upstreamError)) }
            return (backlog, seq == 0 ? nil : Cursor(epoch: epoch, seq: seq))
        }
    }

    /// Removes a subscriber registered on `loop`.
    public func unsubscribe(loop: Int) {
        lock.withLock { _ in
            loopCounts[loop] = max(0, loopCounts[loop] - 1)
            lastUsed = hub.tick()
        }
    }

    /// Subscribers on every loop together.
    public var subscriberCount: Int { lock.withLock { _ in loopCounts.reduce(0, +) } }

    /// What a client holding `since` has missed (long-poll): nil when nothing is newer (or no
    /// state exists yet), else the missed patches or one snapshot.
    public func changes(since: Cursor?) -> [Change]? {
        lock.withLock { _ in
            lastUsed = hub.tick()
            return changesLocked(since: since)
        }
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
        let change = hub.makeChange(topic: name, kind: .snapshot, cursor: cursor, base: nil,
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
        let isJSON = Topic.isJSON(contentType: newType)
        var parsed: JSONValue?
        if isJSON {
            do { parsed = try JSONParser.parse(newBody) } catch { throw .invalidJSON(error.description) }
        }
        return lock.withLock { _ -> UpdateOutcome in
            lastUsed = hub.tick()
            let recovered = upstreamError != nil
            upstreamError = nil
            if recovered { deliverLocked(statusChange(nil)) }
            if seq > 0 && newBody == body && newType == contentType {
                return .unchanged(Cursor(epoch: epoch, seq: seq))
            }
            let base = Cursor(epoch: epoch, seq: seq)
            var patchBytes: [UInt8]?
            var merge = false
            // Snapshot mode with nothing ignored: differing bytes are the change; no diff.
            let needsDiff = endpoint.diff != .snapshot || !diffOptions.ignore.isEmpty
            if needsDiff, seq > 0, let old = document, let new = parsed {
                let result = JSONDiff.diff(old, new, options: diffOptions)
                if !result.isChange { return .unchanged(base) }
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
                change = hub.makeChange(topic: name, kind: .patch, cursor: cursor, base: base,
                                        event: DeltacastEvent.patch(topic: name, cursor: cursor, base: base, patch: patchBytes, merge: merge))
            } else {
                change = snapshotLocked()
            }
            appendToJournal(change)
            deliverLocked(change)
            return .changed(cursor)
        }
    }

    /// Marks the upstream failing (`stale`): subscribers get a status event; the state stays.
    public func upstreamFailed(http: Int?, message: String) {
        lock.withLock { _ in
            let first = upstreamError == nil
            upstreamError = (http, message)
            if first { deliverLocked(statusChange((http, message))) }
        }
    }

    private func statusChange(_ error: (http: Int?, message: String)?) -> Change {
        hub.makeChange(topic: name, kind: .status, cursor: nil, base: nil, event: DeltacastEvent.status(topic: name, error: error))
    }

    private func appendToJournal(_ change: Change) {
        journal.append(change)
        journalBytes += change.event.count
        let limits = hub.configuration.limits
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
