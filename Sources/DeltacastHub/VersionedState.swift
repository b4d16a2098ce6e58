import DeltacastConfig
import DeltacastJSON
import DeltacastWire

/// A topic's versioned state: the document, its epoch and seq, the prepared snapshot, and the
/// journal of the changes that led to it.
struct VersionedState {
    /// This topic's history (random, `[a-z0-9]{8}`; in cluster mode, the cluster's).
    var currentEpoch: String
    /// The last change's number in this epoch (0: no state yet).
    var seq = 0
    /// The current body, parsed (JSON content types): its tape, for the next diff.
    var document: JSONDocument?
    /// The current body as the upstream or publisher sent it.
    var body: [UInt8] = []
    var contentType = "application/json"
    /// The current state as a snapshot event, made once per state when someone needs it.
    var snapshot: Change?
    /// The current document's digest (`digest: true`), computed once per state.
    var currentDigest: String?
    /// Recent changes, for clients that resume.
    var journal = Journal()
    /// When the last change was made (monotonic ms, 0: none yet) and its event's size.
    var lastChangeAt: Int64 = 0
    var lastChangeBytes = 0
    /// Set once the topic ended (its endpoint is gone): nobody may subscribe any more.
    var ended: Change?

    init(epoch: String) { currentEpoch = epoch }
}

// What a new body does to the versioned state, with no lock, hub or clock: the topic asks
// under its lock, and hands the change it makes to its subscribers.
extension VersionedState {
    /// The current state's cursor (seq 0: no state yet).
    var cursor: Cursor { Cursor(epoch: currentEpoch, seq: seq) }

    /// Whether `body` of `contentType` is byte for byte the current state (it costs no parse
    /// and no diff).
    func holds(_ body: [UInt8], contentType: String) -> Bool {
        seq > 0 && body == self.body && contentType == self.contentType
    }

    /// How the current state changes into a new one.
    enum Diffed: Equatable {
        /// Nothing a client sees changes (only ignored fields did).
        case unchanged
        /// A patch (RFC 6902, or RFC 7396 when `merge`) smaller than the new body.
        case patch([UInt8], merge: Bool)
        /// The new state goes whole: no state yet, a body that is not JSON, `diff: snapshot`,
        /// or a patch no smaller than the body.
        case snapshot
    }

    /// The change from the current document to `new` (`body` parsed; nil when not JSON),
    /// by `endpoint`'s `diff` and `options` (its `array_keys` and `ignore`).
    func diff(to new: JSONDocument?, body newBody: [UInt8], endpoint: Configuration.Endpoint, options: DiffOptions) -> Diffed {
        guard diffs(to: new, endpoint: endpoint, options: options), let old = document, let new else { return .snapshot }
        let result = JSONDiff.diff(old, new, options: options)
        if !result.isChange { return .unchanged }
        switch endpoint.diff {
        case .jsonPatch:
            let bytes = JSONPatch.serialized(result.operations)
            if bytes.count < newBody.count { return .patch(bytes, merge: false) }
        case .mergePatch:
            if let mergePatch = JSONMergePatch.diff(old.value, new.value) {
                let bytes = mergePatch.serialized()
                if bytes.count < newBody.count { return .patch(bytes, merge: true) }
            }
        case .snapshot:
            break
        }
        return .snapshot
    }

    /// Whether ``diff(to:body:endpoint:options:)`` compares documents (else the new state goes
    /// whole at once): both are JSON, and the endpoint diffs, or ignores fields. In `diff:
    /// snapshot` mode with nothing ignored, differing bytes are the change.
    func diffs(to new: JSONDocument?, endpoint: Configuration.Endpoint, options: DiffOptions) -> Bool {
        (endpoint.diff != .snapshot || !options.ignore.isEmpty) && seq > 0 && document != nil && new != nil
    }

    /// The next state's change as every subscriber would receive it, made and not applied
    /// (cluster mode commits it to the shared history first): the patch or snapshot event
    /// `diffed` says, from this state to `body` (`json`: it parsed as JSON), carrying `digest`
    /// when the endpoint asks for one. Nil when nothing a client sees changes.
    func prepared(_ diffed: Diffed, topic: String, json: Bool, body: [UInt8], contentType: String, digest: String?) -> Topic.PreparedChange? {
        let base = cursor
        let next = Cursor(epoch: currentEpoch, seq: seq + 1)
        let event: [UInt8]
        switch diffed {
        case .unchanged:
            return nil
        case .patch(let bytes, let merge):
            event = DeltacastEvent.patch(topic: topic, cursor: next, base: base, patch: bytes, merge: merge, digest: digest)
        case .snapshot:
            event = DeltacastEvent.snapshot(topic: topic, cursor: next, data: Topic.snapshotData(body, json: json), digest: digest)
        }
        return Topic.PreparedChange(base: base, cursor: next, event: event, body: body, contentType: contentType)
    }

    /// Makes `body` (`document`, when JSON) the next state of this epoch; returns the cursor
    /// it follows and its own. The prepared snapshot and digest were the old state's: cleared.
    mutating func advance(document: JSONDocument?, body: [UInt8], contentType: String) -> (base: Cursor, cursor: Cursor) {
        let base = cursor
        seq += 1
        take(document: document, body: body, contentType: contentType)
        return (base, cursor)
    }

    /// Jumps to `seq` of `epoch` holding `body`, with no journal (a history this state does
    /// not follow: the cluster's, in another epoch or past a gap).
    mutating func jump(epoch: String, seq: Int, document: JSONDocument?, body: [UInt8], contentType: String) {
        currentEpoch = epoch
        self.seq = seq
        take(document: document, body: body, contentType: contentType)
        journal.removeAll()
    }

    /// Holds `body` as the current state, at the current seq.
    mutating func take(document: JSONDocument?, body: [UInt8], contentType: String) {
        self.document = document
        self.body = body
        self.contentType = contentType
        forgetPrepared()
    }

    /// Drops the snapshot event and digest made for the state before (the seq moved on).
    mutating func forgetPrepared() {
        snapshot = nil
        currentDigest = nil
    }

    /// What a reader holding `since` is owed.
    enum Resume {
        /// Nothing: no state yet, or `since` is the current state.
        case upToDate
        /// The journal's changes after `since`, in order.
        case missed(ArraySlice<Change>)
        /// The current state whole: no cursor, another epoch, a cursor ahead of this state, or
        /// one the journal no longer reaches.
        case snapshot
    }

    func resume(since: Cursor?) -> Resume {
        guard seq > 0 else { return .upToDate }
        if let since, since.epoch == currentEpoch, since.seq <= seq {
            if since.seq == seq { return .upToDate }
            if let missed = journal.changes(after: since.seq), !missed.isEmpty { return .missed(missed) }
        }
        return .snapshot
    }
}
