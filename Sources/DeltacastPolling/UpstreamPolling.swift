import DeltacastBase
public import DeltacastConfig
public import DeltacastHub
public import DeltacastLoop
public import DeltacastServer
import DeltacastUpstream

/// Connects the hub's topics to the upstream (DESIGN.md "Polling"): every new topic of a
/// `source: poll` endpoint gets a poll job on the upstream event loop, which runs while the
/// topic is wanted (subscribers, or a use within `linger`) and evicts it after; each result
/// becomes a new state, a recovery, or an upstream problem for the topic.
public final class UpstreamPolling: TopicSource, @unchecked Sendable {
    let loop: EventLoop
    /// The configuration in force; read and replaced on `loop` only.
    private var configuration: Configuration
    private weak var hub: Hub?
    /// Created on the loop, used only there.
    private var poller: Poller?
    fileprivate private(set) var log = EventLog(level: .info)

    /// A poller for `configuration`'s upstream (its loop starts with ``start(hub:reports:)``).
    public init(configuration: Configuration) throws(SystemError) {
        self.configuration = configuration
        self.loop = try EventLoop()
    }

    /// Starts the upstream loop for `hub`'s topics.
    public func start(hub: Hub, reports: ServerReports) throws(SystemError) {
        self.hub = hub
        self.log = reports.log
        try loop.start(name: "deltacast-upstream")
        let upstream = configuration.upstream
        loop.execute { [self] in
            let client = UpstreamClient(loop: loop, maxConnections: upstream.maxConcurrent)
            let poller = Poller(client: client, maxConcurrent: upstream.maxConcurrent)
            poller.observer = { [weak hub] report in
                guard let topic = hub?.existingTopic(key: report.key) else { return }
                switch report.result {
                case .body, .notModified: reports.recordUpstreamRequest(topic, answered: true)
                case .status, .failed: reports.recordUpstreamRequest(topic, answered: false)
                }
                reports.recordPoll(endpoint: topic.pattern, outcome: Self.outcome(report.result, topic), seconds: Double(report.milliseconds) / 1000)
                if let stretch = report.stretch { reports.recordStretch(endpoint: topic.pattern, stretch: stretch) }
                if let next = report.nextInMilliseconds { topic.recordPoll(failures: report.failures, nextInMilliseconds: next) }
            }
            // Cluster mode: each node spends its share of every budget (the budget over the
            // live nodes).
            poller.budgetShare = { [weak hub] in 1 / Double(max(1, hub?.replication?.liveNodeCount ?? 1)) }
            poller.onBudgetStatus = { reports.recordBudgets($0) }
            poller.setBudgets(Self.budgets(configuration.upstream))
            self.client = client
            poller.authorizers = authorizers(for: configuration.upstream, keeping: [:])
            self.poller = poller
            self.reports = reports
            startChangeIndexes()
        }
    }

    /// The upstream client (on the loop), which token requests share with polls.
    private var client: UpstreamClient?

    /// An OAuth2 client per origin that has an `oauth2` block; one whose settings did not
    /// change is kept, with its token.
    private func authorizers(for upstream: Configuration.Upstream, keeping old: [String: any UpstreamAuthorizing]) -> [String: any UpstreamAuthorizing] {
        guard let client else { return [:] }
        var blocks = upstream.oauth2ByOrigin
        if let oauth2 = upstream.oauth2, let base = upstream.base { blocks.append((base.origin, oauth2)) }
        var result: [String: any UpstreamAuthorizing] = [:]
        for (origin, settings) in blocks {
            if let kept = old[origin] as? OAuth2ClientCredentials, kept.settings == settings {
                result[origin] = kept
            } else {
                result[origin] = OAuth2ClientCredentials(settings: settings, fetcher: client, clock: loop,
                                                         timeoutMilliseconds: Int(upstream.timeout.wholeMilliseconds))
            }
        }
        return result
    }

    /// Each budgeted origin's requests per second.
    static func budgets(_ upstream: Configuration.Upstream) -> [String: Double] {
        var rates: [String: Double] = [:]
        if let budget = upstream.budget, let base = upstream.base { rates[base.origin] = Double(budget.count) / Double(budget.period.wholeMilliseconds) * 1000 }
        for (origin, rate) in upstream.budgets { rates[origin] = Double(rate.count) / Double(rate.period.wholeMilliseconds) * 1000 }
        return rates
    }

    /// The `outcome` label of a poll (after the topic took its result).
    static func outcome(_ result: PollResult, _ topic: Topic) -> String {
        switch result {
        case .notModified: "not_modified"
        case .body: topic.upstreamProblem?.kind == .invalidBody ? "invalid_body" : "ok"
        case .status(let status, _): topic.upstreamProblem?.kind == .forbidden ? "forbidden" : status >= 500 ? "http_5xx" : "http_4xx"
        case .failed(let failure):
            switch failure {
            case .timeout: "timeout"
            case .tooLarge: "too_large"
            case .connect: "connect"
            case .transport: "transport"
            case .credentials: "credentials"
            }
        }
    }

    /// Stops polling and the loop (requests in flight are abandoned). Blocks until it ended.
    public func stop() {
        loop.stop()
        loop.join()
    }

    /// A topic was created: poll it if its endpoint polls (callable from any thread).
    public func topicCreated(_ topic: Topic) {
        guard topic.endpoint.source == .poll else { return }
        loop.execute { [self] in startPolling(topic) }
    }

    /// A new subscriber: an adaptive topic polls at once, or after its minimum interval since
    /// the last poll (callable from any thread).
    public func subscriberArrived(_ topic: Topic) {
        loop.execute { [self] in poller?.subscriberArrived(key: topic.key) }
    }

    /// Re-polls every topic named `name` now (one per credential under passthrough); returns
    /// how many there are.
    public func refresh(name: String) -> Int {
        let topics = hub?.allTopics.filter { $0.name == name } ?? []
        let keys = topics.map(\.key)
        loop.execute { [self] in for key in keys { poller?.refresh(key: key) } }
        return topics.count
    }

    /// Cluster mode: this node now owns `topic`: a poll at once, without validators.
    public func ownershipGained(_ topic: Topic) {
        loop.execute { [self] in
            poller?.forgetValidators(key: topic.key)
            poller?.refresh(key: topic.key)
        }
    }

    /// A reload (callable from any thread): later polls use `new`'s upstream settings; topics
    /// that `ended` stop polling; `changed` topics poll with their endpoint's new request and
    /// interval from their next poll on.
    public func reconfigure(_ new: Configuration, ended: [Topic], changed: [Topic]) {
        loop.execute { [self] in
            configuration = new
            guard let poller else { return }
            poller.setBudgets(Self.budgets(new.upstream))
            poller.authorizers = authorizers(for: new.upstream, keeping: poller.authorizers)
            for topic in ended { poller.stop(key: topic.key) }
            for topic in changed where topic.endpoint.source == .poll {
                if let job = job(for: topic) { poller.update(key: topic.key, job: job) }
            }
            for endpoint in new.endpoints where endpoint.changes != nil {
                if let job = indexJob(endpoint) { poller.update(key: Self.indexKey(endpoint), job: job) }
            }
            startChangeIndexes()
        }
    }

    // MARK: Change indexes

    fileprivate private(set) var reports: ServerReports?
    /// Each change index's state by endpoint pattern: the cursor it was sent last, and whether
    /// its last read failed (its topics then poll at their own interval).
    private var indexes: [String: (cursor: String, failing: Bool)] = [:]

    static func indexKey(_ endpoint: Configuration.Endpoint) -> String { "changes " + endpoint.path.text }

    /// Starts reading the change index of every endpoint that has one and is not read yet.
    private func startChangeIndexes() {
        guard let poller else { return }
        for endpoint in configuration.endpoints where endpoint.changes != nil {
            let path = endpoint.path
            if indexes[path.text] == nil { indexes[path.text] = ("", false) }
            guard !poller.isPolling(Self.indexKey(endpoint)), let job = indexJob(endpoint) else { continue }
            poller.start(key: Self.indexKey(endpoint), job: job, wanted: { [weak self] in
                self?.configuration.endpoints.contains { $0.path == path && $0.changes != nil } ?? false
            }, handler: { [weak self] result in
                self?.indexAnswered(path.text, result) ?? .accepted
            })
        }
    }

    /// The request for `endpoint`'s change index with the last cursor.
    private func indexJob(_ endpoint: Configuration.Endpoint) -> PollJob? {
        guard let index = endpoint.changes else { return nil }
        let cursor = indexes[endpoint.path.text]?.cursor ?? ""
        let template = index.upstream.replacingAll("{cursor}", with: Self.queryEncoded(cursor))
        let origin: URLValue?
        let url: String
        if template.hasPrefix("http://") || template.hasPrefix("https://") {
            url = template
            origin = parseURL(String(template.prefix { $0 != "?" }))
        } else {
            guard let base = configuration.upstream.base else { return nil }
            url = base.description + template
            origin = base
        }
        var headers = configuration.upstream.headers
        for header in endpoint.headers {
            headers.removeAll { $0.name.lowercased() == header.name.lowercased() }
            headers.append(header)
        }
        let upstream = configuration.upstream
        let request = UpstreamRequest(url: url, headers: headers, timeoutMilliseconds: Int(upstream.timeout.wholeMilliseconds),
                                      maxBody: upstream.maxBody, followRedirects: upstream.followRedirects)
        return PollJob(request: request, intervalMilliseconds: index.every.wholeMilliseconds, jitterMilliseconds: 0,
                       origin: origin?.origin, authorized: true)
    }

    /// One read of the change index of the endpoint `path`: the topics it names poll now.
    /// Failures (an error status, no answer, an answer that is not an index, a cursor gone back)
    /// are logged once per outage and counted; meanwhile the topics poll at their interval,
    /// and when the index answers again every topic of the endpoint polls once, so no change
    /// made meanwhile waits for the safety net.
    private func indexAnswered(_ path: String, _ result: PollResult) -> PollVerdict {
        guard let endpoint = configuration.endpoints.first(where: { $0.path.text == path }), let index = endpoint.changes,
              var state = indexes[path], let poller, let hub else { return .accepted }
        let failure: (label: String, message: String)?
        var answer: ChangeIndexAnswer?
        switch result {
        case .notModified:
            failure = nil
            answer = ChangeIndexAnswer(paths: [], cursor: nil)
        case .body(_, _, let body):
            switch ChangeIndexAnswer.read(body, index: index, endpoint: endpoint, previous: state.cursor) {
            case .success(let read):
                failure = nil
                answer = read
            case .failure(let problem):
                failure = (problem.label, problem.message)
                if case .cursorBackwards(_, let to) = problem { state.cursor = to }   // the index was reset: go on from there
            }
        case .status(let status, _):
            failure = ("status", "the change index answered \(status)")
        case .failed(let problem):
            failure = ("transport", "\(problem)")
        }
        let topics = hub.allTopics.filter { $0.endpoint.path == endpoint.path }
        var triggered = 0
        if let failure {
            if !state.failing {
                log.log(.warn, "change_index_failed", ["endpoint": .string(path), "reason": .string(failure.label), "message": .string(failure.message),
                                                       "fallback": .string("each topic polls every \(formatDuration(endpoint.interval))")])
            }
            state.failing = true
        } else if let answer {
            if state.failing {
                log.log(.info, "change_index_recovered", ["endpoint": .string(path)])
                for topic in topics where poller.refresh(key: topic.key) { triggered += 1 }
            } else {
                let named = Set(answer.paths)
                for topic in topics where named.contains(String(topic.name.prefix { $0 != "?" })) && poller.refresh(key: topic.key) { triggered += 1 }
            }
            state.failing = false
            if let cursor = answer.cursor { state.cursor = cursor }
        }
        let cursorChanged = indexes[path]?.cursor != state.cursor
        indexes[path] = state
        if cursorChanged, let job = indexJob(endpoint) { poller.update(key: Self.indexKey(endpoint), job: job) }
        reports?.recordChangeIndex(endpoint: path, triggered: triggered, failure: failure?.label)
        reports?.recordIndexRead(endpoint: path)
        return failure == nil ? .accepted : .rejected
    }

    /// A cursor as a query value: everything but unreserved characters percent-encoded.
    static func queryEncoded(_ text: String) -> String {
        OAuth2ClientCredentials.formEncoded(text).replacingAll("+", with: "%20")
    }

    /// The poll job of `topic` under the configuration in force.
    private func job(for topic: Topic) -> PollJob? {
        let endpoint = topic.endpoint
        guard let hub, case .matched(_, _, let parameters) = hub.matcher.match(topic.name),
              let url = endpoint.upstreamURL(base: configuration.upstream.base, parameters: parameters, topic: topic.name) else { return nil }
        var headers = configuration.upstream.headers
        for header in endpoint.headers {
            headers.removeAll { $0.name.lowercased() == header.name.lowercased() }
            headers.append(header)
        }
        if endpoint.auth == .passthrough {
            // The client's credentials replace the proxy's own, even when the client sent none:
            // an anonymous client must never be served what the service token can read.
            let forwarded = Set(endpoint.forwardHeaders.map { $0.lowercased() })
            headers.removeAll { forwarded.contains($0.name.lowercased()) }
            headers += topic.credentials
        }
        let upstream = configuration.upstream
        let request = UpstreamRequest(url: url, headers: headers, timeoutMilliseconds: Int(upstream.timeout.wholeMilliseconds),
                                      maxBody: endpoint.maxBody ?? upstream.maxBody, followRedirects: upstream.followRedirects)
        return PollJob(request: request, intervalMilliseconds: endpoint.interval.wholeMilliseconds,
                       jitterMilliseconds: endpoint.effectiveJitter.wholeMilliseconds, origin: (endpoint.upstreamOrigin ?? configuration.upstream.base)?.origin,
                       authorized: endpoint.auth != .passthrough,
                       adaptive: endpoint.adaptiveInterval.map { ($0.min.wholeMilliseconds, $0.max.wholeMilliseconds) })
    }

    private func startPolling(_ topic: Topic) {
        guard let poller, let hub, let job = job(for: topic) else { return }
        poller.start(key: topic.key, job: job, target: PolledTopic(topic: topic, hub: hub, polling: self))
    }

    /// One topic as the poller sees it: the hub says whether it is still wanted and who may
    /// poll it; each result becomes its new state or problem (``apply(_:to:uncommitted:changed:)``).
    private final class PolledTopic: PollTarget {
        let topic: Topic
        weak var hub: Hub?
        weak var polling: UpstreamPolling?
        let log: EventLog
        let loop: EventLoop
        let reports: ServerReports?

        init(topic: Topic, hub: Hub, polling: UpstreamPolling) {
            self.topic = topic
            self.hub = hub
            self.polling = polling
            log = polling.log
            loop = polling.loop
            reports = polling.reports
        }

        var isWanted: Bool {
            guard let hub else { return false }
            return !hub.evictIfIdle(topic)
        }

        var mayPoll: Bool { hub?.replication?.mayPoll(topic) ?? true }

        var watchers: Int { topic.subscriberCount }

        func judge(_ result: PollResult) -> PollVerdict {
            let (topic, log, loop, reports) = (topic, log, loop, reports)
            if case .notModified = result {
                // Most polls: nothing changed. One lock, no closures to build.
                if topic.upstreamRecovered() { log.log(.info, "upstream_recovered", ["topic": .string(topic.name)]) }
                return .accepted
            }
            let before = topic.upstreamProblem
            // The change a poll finds happened after the poll before it started.
            let previousStart = polling?.poller?.judgedPreviousStart
            let verdict = UpstreamPolling.apply(result, to: topic, uncommitted: { [weak polling] in
                // Cluster mode: the commit failed after the poll was judged. Its validators
                // must not turn the next poll into a 304 that leaves the change uncommitted.
                loop.execute { [weak polling] in polling?.poller?.forgetValidators(key: topic.key) }
            }, changed: { [weak polling] in
                reports?.recordChange(topic, boundMilliseconds: previousStart.map { MonotonicClock.milliseconds() - $0 })
                // An adaptive interval counts the change (after the poll's own scheduling, on the loop).
                loop.execute { [weak polling] in polling?.poller?.changed(key: topic.key) }
            })
            let after = topic.upstreamProblem
            if let after, before?.kind != after.kind {
                log.log(after.kind == .forbidden ? .info : .warn, "upstream_error", ["topic": .string(topic.name), "kind": .string("\(after.kind)"),
                                                                                     "http": .int(after.http ?? 0), "reason": .string(after.message)])
            } else if before != nil && after == nil {
                log.log(.info, "upstream_recovered", ["topic": .string(topic.name)])
            }
            return verdict
        }
    }

    /// Turns one poll's result into the topic's new state or problem. In cluster mode a body's
    /// commit goes on after this returns; `uncommitted` is called (on the cluster's thread)
    /// if it then fails.
    static func apply(_ result: PollResult, to topic: Topic, uncommitted: @escaping @Sendable () -> Void = {},
                      changed: @escaping @Sendable () -> Void = {}) -> PollVerdict {
        switch result {
        case .notModified:
            topic.upstreamRecovered()
            return .accepted
        case .body(let status, let contentType, let body):
            let progress = topic.update(body: body, contentType: contentType) { outcome in
                if case .failure = outcome { uncommitted() }
                if case .success(.changed) = outcome { changed() }
            }
            switch progress {
            case .finished(.success(.changed)):
                changed()
                return .accepted
            case .committing, .finished(.success):
                return .accepted
            case .finished(.failure(.clusterUnavailable)):
                // Not committed: the next poll tries again (validators dropped, so it gets a body).
                return .rejected
            case .finished(.failure(let error)):
                topic.upstreamFailed(UpstreamProblem(kind: .invalidBody, http: status, message: "upstream \(error)"))
                return .rejected
            }
        case .status(let status, _):
            if topic.endpoint.auth == .passthrough && (status == 401 || status == 403) {
                topic.upstreamFailed(UpstreamProblem(kind: .forbidden, http: status,
                                                     message: "the upstream refused these credentials (\(status))"))
            } else {
                topic.upstreamFailed(UpstreamProblem(kind: .status, http: status, message: "upstream answered \(status)"))
            }
            return .rejected
        case .failed(let failure):
            let kind: UpstreamProblem.Kind = if case .timeout = failure { .timeout } else { .transport }
            topic.upstreamFailed(UpstreamProblem(kind: kind, http: nil, message: failure.description))
            return .rejected
        }
    }
}
