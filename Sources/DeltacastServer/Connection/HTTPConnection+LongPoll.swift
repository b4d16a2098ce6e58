import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// Long-poll requests: `GET /deltacast/poll` and holding a request until its topics change.
extension HTTPConnection {
    func poll(_ request: HTTPRequestHead, topics requested: [MultiplexedRequest.Requested], credential: Credential, caughtUp: Bool = false) {
        // Cluster mode: topics this node meets now, or held at a cursor newer than its state,
        // catch up with Redis first; the request waits, the loop does not.
        if !caughtUp, state.context.cluster != nil,
           awaitCatchUp(request, topics: resolvedTopics(requested.prefix(configuration.limits.maxTopicsPerConnection), credential: credential, request: request),
                        then: { [unowned self] in poll(request, topics: requested, credential: credential, caughtUp: true) }) {
            return
        }
        var answer = PollAnswer()
        var watched: [(Topic, Cursor?)] = []
        for (name, endpoint, since) in requested.prefix(configuration.limits.maxTopicsPerConnection) {
            if let error = refusal(name, endpoint: endpoint, credential: credential) { answer.append(error); continue }
            guard let topic = hubTopic(name, endpoint: endpoint!, request: nil, credentialsFrom: request) else {
                answer.append(DeltacastEvent.error(topic: name, code: .tooMany, message: "the proxy holds limits.max_topics topics, all watched"))
                continue
            }
            let problem = topic.upstreamProblem
            if let problem, problem.kind == .forbidden {
                answer.append(DeltacastEvent.error(topic: name, code: .forbidden, message: problem.message))
                continue
            }
            if let changes = topic.changes(since: since) {
                for change in changes { answer.append(change.event) }
                if let problem { answer.append(DeltacastEvent.status(topic: name, error: (problem.http, problem.message))) }
            }
            watched.append((topic, since))
        }
        if requested.count > configuration.limits.maxTopicsPerConnection {
            answer.append(DeltacastEvent.error(topic: nil, code: .tooMany, message: "at most \(configuration.limits.maxTopicsPerConnection) topics per request (limits.max_topics_per_connection)"))
        }
        if !answer.isEmpty || watched.isEmpty {
            return finish(request, answer.response())
        }
        let wait = Router.firstQueryValue(request.target, "wait").flatMap { Int($0) } ?? 25
        beginHold(.multiplexed, request: request, topics: watched, milliseconds: HoldSession.wait(seconds: wait, maximum: configuration.server.maxWait.wholeMilliseconds))
    }

    /// The topics of `requested` that may be read (not refused), with their cursors: the ones a
    /// request must wait for when they need to catch up (cluster mode).
    func resolvedTopics(_ requested: ArraySlice<MultiplexedRequest.Requested>, credential: Credential, request: HTTPRequestHead) -> [(Topic, Cursor?)] {
        requested.compactMap { name, endpoint, since in
            guard let endpoint, refusal(name, endpoint: endpoint, credential: credential) == nil,
                  let topic = hubTopic(name, endpoint: endpoint, request: nil, credentialsFrom: request) else { return nil }
            return (topic, since)
        }
    }

    /// Holds `request` on `topics`, each at the cursor the caller found it at. A change (or a
    /// cold topic's first failure) that lands between the caller's look and the subscription
    /// reaches no subscriber, so the hold checks each topic once more when attached and answers
    /// at once if one moved, rather than waiting for the next change or the deadline.
    func beginHold(_ kind: HoldSession.Kind, request: HTTPRequestHead, topics: [(Topic, Cursor?)], milliseconds: Int64) {
        let hold = HoldSession(kind: kind, request: request, expiresAt: MonotonicClock.milliseconds() + milliseconds)
        // The deadline first (`install` schedules it): a topic that moved may still have no
        // answer to give (a mirrored GET whose upstream now refuses the credential), and the
        // hold must then still end.
        install(hold)
        var moved = false
        for (topic, since) in topics {
            let now = attach(topic, since: since, sendBacklog: false)
            if HoldSession.moved(kind, since: since, now: now, failing: topic.upstreamProblem != nil) { moved = true }
        }
        if moved, let answer = hold.settle(subscriptions, status: nil) { perform(answer) }
    }
}
