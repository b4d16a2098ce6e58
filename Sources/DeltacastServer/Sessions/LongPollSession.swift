import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// A held long-poll: what answers it and its timer. A class, so an idle connection carries
/// one pointer for it rather than a whole request head.
final class Hold {
    enum Kind {
        /// `GET /path` with `If-None-Match` and `Prefer: wait=N`: 200 on change, 304 on expiry.
        case mirrored
        /// A cold `GET /path` waiting for the topic's first state: 504 on expiry.
        case cold
        /// `GET /deltacast/poll`: a JSON array of events, 204 on expiry.
        case multiplexed
    }
    let kind: Kind
    let request: HTTPRequestHead
    var timer: UInt64?
    init(kind: Kind, request: HTTPRequestHead) { self.kind = kind; self.request = request }

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
}

extension HTTPConnection {
    func poll(_ request: HTTPRequestHead, topics requested: [(String, Int?, Cursor?)], credential: Credential) {
        var events: [[UInt8]] = []
        var watched: [(Topic, Cursor?)] = []
        for (name, endpoint, since) in requested.prefix(configuration.limits.maxTopicsPerConnection) {
            if let error = refusal(name, endpoint: endpoint, credential: credential) { events.append(error); continue }
            guard let topic = hubTopic(name, endpoint: endpoint!, request: nil, credentialsFrom: request) else {
                events.append(DeltacastEvent.error(topic: name, code: .tooMany, message: "the proxy holds limits.max_topics topics, all watched"))
                continue
            }
            let problem = topic.upstreamProblem
            if let problem, problem.kind == .forbidden {
                events.append(DeltacastEvent.error(topic: name, code: .forbidden, message: problem.message))
                continue
            }
            if let changes = topic.changes(since: since) {
                events += changes.map(\.event)
                if let problem { events.append(DeltacastEvent.status(topic: name, error: (problem.http, problem.message))) }
            }
            watched.append((topic, since))
        }
        if requested.count > configuration.limits.maxTopicsPerConnection {
            events.append(DeltacastEvent.error(topic: nil, code: .tooMany, message: "at most \(configuration.limits.maxTopicsPerConnection) topics per request (limits.max_topics_per_connection)"))
        }
        if !events.isEmpty || watched.isEmpty {
            return finish(request, pollResponse(events))
        }
        let wait = Router.queryValues(request.target, "wait").first.flatMap { Int($0) } ?? 25
        beginHold(.multiplexed, request: request, topics: watched, milliseconds: Hold.wait(seconds: wait, maximum: configuration.server.maxWait.wholeMilliseconds))
    }

    func pollResponse(_ events: [[UInt8]]) -> RoutedResponse {
        state.counters.delivered(transport: .longpoll, count: events.count, bytes: events.reduce(0) { $0 + $1.count })
        var body: [UInt8] = [0x5B]
        for (index, event) in events.enumerated() {
            if index > 0 { body.append(0x2C) }
            body += event
        }
        body.append(0x5D)
        return RoutedResponse(status: 200, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: body)
    }

    // MARK: Holding (long-poll)

    /// Holds `request` on `topics`, each at the cursor the caller found it at. A change (or a
    /// cold topic's first failure) that lands between the caller's look and the subscription
    /// reaches no subscriber, so the hold checks each topic once more when attached and answers
    /// at once if one moved, rather than waiting for the next change or the deadline.
    func beginHold(_ kind: Hold.Kind, request: HTTPRequestHead, topics: [(Topic, Cursor?)], milliseconds: Int64) {
        mode = .held
        var moved = false
        for (topic, since) in topics {
            let now = attach(topic, since: since, sendBacklog: false)
            if Hold.moved(kind, since: since, now: now, failing: topic.upstreamProblem != nil) { moved = true }
        }
        let hold = Hold(kind: kind, request: request)
        self.hold = hold
        // The deadline first: a topic that moved may still have no answer to give (a mirrored
        // GET whose upstream now refuses the credential), and the hold must then still end.
        hold.timer = state.loop.schedule(afterMilliseconds: milliseconds) { [weak self] in self?.expireHold() }
        if moved { settle(hold, status: nil) }
    }

    /// Answers a held request when its wait ends (or the server shuts down).
    func expireHold() {
        guard let hold else { return }
        release(hold, with: hold.expiryResponse)
    }

    func release(_ hold: Hold, with response: RoutedResponse) {
        if let timer = hold.timer { state.loop.cancelTimer(timer) }
        self.hold = nil
        detachAll()
        finish(hold.request, response)
        flush()
        if !closed && !closeAfterFlush { resumeHTTP() }
    }

    /// A held request's topic changed: answer it.
    func answerHold(_ hold: Hold, change: Change) {
        settle(hold, status: change.cursor == nil ? change.event : nil)
    }

    /// Answers a hold from its topics' state, if there is an answer: the current body (or, on
    /// a cold GET, the first poll's failure); for `/deltacast/poll`, the journaled changes plus
    /// `status`, the event of a status change that woke it (not in the journal).
    func settle(_ hold: Hold, status: [UInt8]?) {
        switch hold.kind {
        case .mirrored, .cold:
            guard let topic = subscriptions.entries.values.first?.topic else { return }
            guard let current = topic.current() else {
                // No good state: a cold GET gets the first poll's failure at once.
                if hold.kind == .cold, let problem = topic.upstreamProblem {
                    release(hold, with: Self.problemResponse(problem))
                }
                return
            }
            let etag = "\"\(current.cursor)\""
            release(hold, with: RoutedResponse(status: 200, headers: cacheHeaders(etag: etag, contentType: current.contentType, stale: current.stale), body: current.body))
        case .multiplexed:
            var events: [[UInt8]] = []
            for subscription in subscriptions.entries.values {
                if let changes = subscription.topic.changes(since: subscription.cursor) { events += changes.map(\.event) }
            }
            // Status and error events are not in the journal: they travel with what woke us.
            if let status { events.append(status) }
            release(hold, with: pollResponse(events))
        }
    }

}
