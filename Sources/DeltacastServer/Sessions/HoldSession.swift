import DeltacastConfig
import DeltacastHub
import DeltacastWire

/// A held long-poll: a request that waits for a change of its topics, answered once, after
/// which the connection is plain HTTP again. Bytes of a pipelined next request wait meanwhile.
///
/// An immutable value. Its fields live in one shared box, so a copy (the connection's session
/// existential hands one to each delivery) retains one reference, not each string and field
/// of the request head.
struct HoldSession: PushSession {
    enum Kind {
        /// `GET /path` with `If-None-Match` and `Prefer: wait=N`: 200 on change, 304 on expiry.
        case mirrored
        /// A cold `GET /path` waiting for the topic's first state: 504 on expiry.
        case cold
        /// `GET /deltacast/poll`: a JSON array of events, 204 on expiry.
        case multiplexed
    }
    private final class Fields: Sendable {
        let kind: Kind
        let request: HTTPRequestHead
        let expiresAt: Int64
        init(kind: Kind, request: HTTPRequestHead, expiresAt: Int64) {
            self.kind = kind
            self.request = request
            self.expiresAt = expiresAt
        }
    }
    private let fields: Fields

    var kind: Kind { fields.kind }
    var request: HTTPRequestHead { fields.request }
    /// When the wait ends (monotonic ms).
    var expiresAt: Int64 { fields.expiresAt }

    init(kind: Kind, request: HTTPRequestHead, expiresAt: Int64) {
        fields = Fields(kind: kind, request: request, expiresAt: expiresAt)
    }

    var transport: Transport { .longpoll }
    var name: String { "held" }
    var deadline: Int64? { expiresAt }
    var streams: Bool { false }

    /// How long to hold, milliseconds: what the client asked for (seconds, negative as 0), at
    /// most `server.max_wait`.
    static func wait(seconds: Int, maximum: Int64) -> Int64 {
        min(Int64(max(0, seconds)) * 1000, maximum)
    }

    /// Whether a topic held at `since` has something to answer with at `now`, its cursor when
    /// the hold subscribed: a new state, or for a cold GET a failing upstream.
    static func moved(_ kind: Kind, since: Cursor?, now: Cursor?, failing: Bool) -> Bool {
        now != since || (kind == .cold && failing)
    }

    /// The answer when the wait ends with no change: 304 (the client's copy is current), 504 (no
    /// first state came), or 204 (nothing happened to the polled topics).
    var expiryResponse: RoutedResponse {
        switch kind {
        case .mirrored: RoutedResponse(status: 304, headers: ["Cache-Control": "no-cache"], body: [])
        case .cold: .error(504, "upstream_timeout", "the upstream did not provide a first state in time")
        case .multiplexed: RoutedResponse(status: 204, headers: ["Cache-Control": "no-store"], body: [])
        }
    }

    /// The next pipelined request waits until this one is answered (the shell bounds it).
    func received(_ bytes: ArraySlice<UInt8>, now: Int64) -> [SessionAction] { [.keepForNextRequest(bytes)] }

    /// A held topic changed: the answer, if there is one yet.
    func deliver(_ change: Change, subscriptions: () -> SubscriptionSet) -> SessionAction? {
        settle(subscriptions(), status: change.cursor == nil ? change.event : nil)
    }

    /// The answer from the held topics' state, if there is one: the current body (or, on a
    /// cold GET, the first poll's failure); for `/deltacast/poll`, the journaled changes plus
    /// `status`, the event of a status change that woke it (not in the journal).
    func settle(_ subscriptions: SubscriptionSet, status: [UInt8]?) -> SessionAction? {
        switch kind {
        case .mirrored, .cold:
            var held: Topic?
            subscriptions.forEach { held = $0.topic }
            guard let topic = held else { return nil }
            guard let current = topic.current() else {
                // No good state: a cold GET gets the first poll's failure at once.
                guard kind == .cold, let problem = topic.upstreamProblem else { return nil }
                return .answer(request, MirroredRead.problemResponse(problem))
            }
            let etag = "\"\(current.cursor)\""
            return .answer(request, RoutedResponse(status: 200, headers: MirroredRead.cacheHeaders(etag: etag, contentType: current.contentType, stale: current.stale), body: current.body))
        case .multiplexed:
            var answer = PollAnswer()
            subscriptions.forEach { subscription in
                for change in subscription.topic.changes(since: subscription.cursor) ?? [] { answer.append(change.event) }
            }
            // Status and error events are not in the journal: they travel with what woke us.
            if let status { answer.append(status) }
            return .answer(request, answer.response())
        }
    }

    /// A held poll queues no change: each one may answer it.
    var framing: ChangeFraming { .answering }
    /// Never asked: a held request is not a stream (``streams``).
    func event(_ payload: [UInt8]) -> [UInt8] { payload }

    /// The wait is over: 304, 504 or 204.
    func tick(now: Int64, silent: Bool) -> [SessionAction] {
        now >= expiresAt ? [.answer(request, expiryResponse)] : []
    }

    func subscriptionEnded(reason: String) -> [SessionAction] { [] }
    func end(code: UInt16, reason: String) -> [SessionAction] { [.answer(request, expiryResponse)] }
    /// Shutdown answers at once, as if the wait were over.
    func drain() -> [SessionAction] { [.answer(request, expiryResponse)] }
}

/// A long-poll answer, built as its events come: one JSON array of them, written straight
/// into the body (no list of events first; a poll's one event costs one allocation).
struct PollAnswer {
    private var body: [UInt8] = []
    private(set) var events = 0

    var isEmpty: Bool { events == 0 }

    mutating func append(_ event: [UInt8]) {
        if events == 0 {
            body.reserveCapacity(event.count + 2)
            body.append(0x5B)
        } else {
            body.append(0x2C)
        }
        body += event
        events += 1
    }

    /// 200 with the array (`[]` when no event came). The closing bracket is appended in place:
    /// the reserved capacity has room for it.
    mutating func response() -> RoutedResponse {
        if events == 0 { body = [0x5B] }
        body.append(0x5D)
        return RoutedResponse(status: 200, headers: Self.headers, body: body, events: events)
    }

    /// Built once: every answer shares the field list.
    private static let headers: HTTPHeaders = ["Content-Type": "application/json", "Cache-Control": "no-store"]
}

