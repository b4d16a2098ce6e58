import DeltacastBase
import DeltacastCluster
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Deliveries and their bytes by transport, counted in a local value during a fan-out and
/// recorded in ``LoopCounters`` once.
struct DeliveryTally {
    var count = PerTransport(repeating: 0)
    var bytes = PerTransport(repeating: 0)

    mutating func add(_ transport: Transport, bytes: Int) {
        count[transport] += 1
        self.bytes[transport] += bytes
    }
}

/// Counters of one event loop, written only by that loop (relaxed atomics, uncontended: cheap
/// enough for the delivery path) and summed by a scrape on any loop.
final class LoopCounters: Sendable {
    /// Open connections of this loop that are plain HTTP, and by the transport they carry.
    let connectionsHTTP = Atomic<Int>(0)
    let connections = PerTransport { _ in Counter() }
    /// Deliveries and bytes queued, by transport.
    let deliveries = PerTransport { _ in Counter() }
    let bytes = PerTransport { _ in Counter() }
    let conflations = Atomic<Int>(0)
    let slowConsumerCloses = Atomic<Int>(0)
    /// `accept` failures (out of descriptors): each one waits 100 ms before the next try.
    let acceptFailures = Atomic<Int>(0)
    /// Client libraries that found their state of a topic differing from a change's digest.
    let clientDrifts = Atomic<Int>(0)
    let resumesFromJournal = Atomic<Int>(0)
    let resumesBySnapshot = Atomic<Int>(0)
    /// This loop's five connections with the most bytes pending, refreshed by its sweep.
    let slowest = Locked<[(id: Int, pendingBytes: Int, mode: String, idleMilliseconds: Int64)]>([])

    /// Moves `delta` connections into (or out of) the gauge of `transport` (nil: plain HTTP).
    func adjust(_ transport: Transport?, by delta: Int) {
        guard let transport else { connectionsHTTP.add(delta, ordering: .relaxed); return }
        connections[transport].add(delta)
    }

    /// Counts `count` deliveries of `bytes` in all on `transport`.
    func delivered(transport: Transport, count: Int, bytes: Int) {
        deliveries[transport].add(count)
        self.bytes[transport].add(bytes)
    }

    /// Counts what a fan-out (or one push) tallied.
    func record(_ tally: DeliveryTally) {
        for transport in Transport.allCases where tally.count[transport] > 0 {
            delivered(transport: transport, count: tally.count[transport], bytes: tally.bytes[transport])
        }
    }

    /// One relaxed counter (uncontended: only its loop writes it).
    final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        func add(_ delta: Int) { value.add(delta, ordering: .relaxed) }
        var current: Int { value.load(ordering: .relaxed) }
    }
}

/// Process-wide counters that are not per loop: refusals and upstream polls.
public final class ServerMetrics: Sendable {
    let refusedConnectionLimit = Atomic<Int>(0)
    let refusedPerIP = Atomic<Int>(0)
    let adminUnauthorized = Atomic<Int>(0)
    let adminForbidden = Atomic<Int>(0)
    let refusedPerUser = Atomic<Int>(0)
    let rateLimited = Atomic<Int>(0)
    let unauthenticated = Atomic<Int>(0)
    let forbidden = Atomic<Int>(0)
    /// Configuration reloads that took effect, and that changed nothing (a broken file).
    let reloadsSucceeded = Atomic<Int>(0)
    let reloadsFailed = Atomic<Int>(0)
    /// Polls by endpoint pattern and outcome.
    let polls = Locked<[String: [String: Int]]>([:])
    /// Poll durations by endpoint pattern.
    let pollSeconds = Locked<[String: Histogram]>([:])
    /// How far budgets stretch each endpoint's interval (a moving average), by endpoint pattern.
    let stretch = Locked<[String: Double]>([:])
    /// Change-index reads by endpoint: reads, topics triggered, failures by reason.
    let changeIndex = Locked<[String: (reads: Int, triggered: Int, failures: [String: Int])]>([:])
    /// The request budgets, as of the last second.
    let budgets = Locked<[UpstreamBudgetStatus]>([])

    func recordPoll(endpoint: String, outcome: String, seconds: Double) {
        polls.withLock { $0[endpoint, default: [:]][outcome, default: 0] += 1 }
        let histogram = pollSeconds.withLock { table in
            if let existing = table[endpoint] { return existing }
            let created = Histogram(bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
            table[endpoint] = created
            return created
        }
        histogram.observe(seconds)
    }
}

/// The Prometheus text exposition format (version 0.0.4), built family by family.
struct PrometheusText {
    private(set) var text = ""

    static func escape(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    static func labels(_ pairs: [(String, String)]) -> String {
        pairs.isEmpty ? "" : "{" + pairs.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    mutating func family(_ name: String, _ type: String, _ help: String, _ samples: [([(String, String)], Double)]) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for (labels, value) in samples { text += name + Self.labels(labels) + " " + Self.format(value) + "\n" }
    }

    mutating func histogram(_ name: String, _ help: String, _ series: [([(String, String)], Histogram)]) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (labels, histogram) in series {
            let (cumulative, sum, count) = histogram.snapshot()
            for (bound, value) in zip(histogram.bounds, cumulative) {
                text += name + "_bucket" + Self.labels(labels + [("le", Self.format(bound))]) + " \(value)\n"
            }
            text += name + "_bucket" + Self.labels(labels + [("le", "+Inf")]) + " \(count)\n"
            text += name + "_sum" + Self.labels(labels) + " " + Self.format(sum) + "\n"
            text += name + "_count" + Self.labels(labels) + " \(count)\n"
        }
    }

    /// Cluster mode's series.
    mutating func cluster(_ cluster: Cluster) {
        let m = cluster.metrics
        family("deltacast_cluster_redis_up", "gauge", "1 while Redis answers, 0 while it cannot be reached.", [([], cluster.isAvailable ? 1 : 0)])
        family("deltacast_cluster_redis_outages_total", "counter", "Times Redis became unreachable.", [([], Double(m.redisDown.load(ordering: .relaxed)))])
        family("deltacast_cluster_leases_held", "gauge", "Topics this node owns (polls) now.", [([], Double(cluster.leasesHeld))])
        family("deltacast_cluster_lease_takeovers_total", "counter", "Topics this node came to own (a topic it began to poll).", [([], Double(m.leaseAcquisitions.load(ordering: .relaxed)))])
        family("deltacast_cluster_commits_total", "counter", "Changes this node committed to the shared history, by result.", [
            ([("result", "ok")], Double(m.commits.load(ordering: .relaxed))),
            ([("result", "conflict")], Double(m.conflicts.load(ordering: .relaxed))),
            ([("result", "fenced")], Double(m.fenced.load(ordering: .relaxed))),
        ])
        family("deltacast_cluster_membership_lapses_total", "counter", "Heartbeats that found this node's membership expired (paused or cut off past the lease): a new incarnation began.", [([], Double(m.lapses.load(ordering: .relaxed)))])
        family("deltacast_cluster_changes_resyncs_total", "counter", "Times the changes stream showed this node had missed more than it could read; it re-read every topic.", [([], Double(m.changesResyncs.load(ordering: .relaxed)))])
        family("deltacast_cluster_gap_fills_total", "counter", "Times this node found itself behind and read the missed changes from the journal.", [([], Double(m.gapFills.load(ordering: .relaxed)))])
        family("deltacast_cluster_resets_total", "counter", "Times a topic jumped to the shared state with a snapshot (new epoch, or a gap past the journal).", [([], Double(m.resets.load(ordering: .relaxed)))])
        family("deltacast_cluster_redis_redirects_total", "counter", "Redis Cluster redirections followed: MOVED (a slot's primary changed) and ASK (a slot migrating).",
               [([("kind", "moved")], Double(m.redisMoved.load(ordering: .relaxed))), ([("kind", "ask")], Double(m.redisAsked.load(ordering: .relaxed)))])
        family("deltacast_cluster_redis_retries_total", "counter", "Redis commands retried after TRYAGAIN, CLUSTERDOWN, a key no longer on that primary, or a primary not connected.", [([], Double(m.redisRetried.load(ordering: .relaxed)))])
        family("deltacast_cluster_slot_map_reads_total", "counter", "Redis Cluster slot maps read (CLUSTER SLOTS).", [([], Double(m.slotMapReads.load(ordering: .relaxed)))])
        family("deltacast_cluster_script_loads_total", "counter", "Scripts sent whole after NOSCRIPT (a new or restarted Redis).", [([], Double(m.scriptLoads.load(ordering: .relaxed)))])
        family("deltacast_cluster_epoch_rotations_total", "counter", "New epochs this node started (history lost, or a seq gone backwards).", [([], Double(m.epochRotations.load(ordering: .relaxed)))])
        histogram("deltacast_cluster_commit_seconds", "Commit script round trips.", [([], m.scriptSeconds)])
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

extension HTTPServer {
    /// Everything `/metrics` shows. Labels are bounded: transports, modes, outcomes and
    /// endpoint patterns from the configuration; never a client, a credential or a topic.
    func metricsText(draining: Bool) -> String {
        let counters = loopCounters
        func sum(_ pick: (LoopCounters) -> Int) -> Double {
            Double(counters.reduce(0) { $0 + pick($1) })
        }
        var out = PrometheusText()
        out.family("deltacast_connections_open", "gauge", "Open client connections.", [([], Double(openConnections.load(ordering: .relaxed)))])
        out.family("deltacast_draining", "gauge", "Whether the server is shutting down (1) or not (0).", [([], draining ? 1 : 0)])
        out.family("deltacast_connections", "gauge", "Open client connections by what they carry now.",
                   [([("mode", "http")], sum { $0.connectionsHTTP.load(ordering: .relaxed) })]
                   + Transport.allCases.map { transport in ([("mode", transport.rawValue)], sum { $0.connections[transport].current }) })
        let topics = hub.allTopics
        out.family("deltacast_topics", "gauge", "Topics alive.", [([], Double(topics.count))])
        out.family("deltacast_subscriptions", "gauge", "Subscriptions (and held long-polls) on every topic.", [([], Double(topics.reduce(0) { $0 + $1.subscriberCount }))])
        out.family("deltacast_deliveries_total", "counter", "Events queued to subscribers, by transport.",
                   Transport.allCases.map { transport in ([("transport", transport.rawValue)], sum { $0.deliveries[transport].current }) })
        out.family("deltacast_delivered_bytes_total", "counter", "Bytes of events queued to subscribers, by transport.",
                   Transport.allCases.map { transport in ([("transport", transport.rawValue)], sum { $0.bytes[transport].current }) })
        let statistics = hub.statistics
        out.family("deltacast_changes_total", "counter", "Changes of topics, by how they travel.", [
            ([("kind", "snapshot")], Double(statistics.snapshotCount)), ([("kind", "patch")], Double(statistics.patchCount)),
        ])
        out.family("deltacast_unchanged_total", "counter", "New bodies that changed nothing a client can see (identical, or ignored fields only).", [([], Double(statistics.unchangedCount))])
        out.family("deltacast_bytes_saved_total", "counter", "Bytes patches saved subscribers against receiving the whole body each time.", [([], Double(statistics.savedBytes))])
        savingsMetrics(&out)
        out.histogram("deltacast_diff_seconds", "Time to diff a new body against the stored one.", [([], statistics.diffSeconds)])
        out.histogram("deltacast_patch_bytes", "Sizes of patch events.", [([], statistics.patchBytes)])
        out.histogram("deltacast_snapshot_bytes", "Sizes of snapshot events.", [([], statistics.snapshotBytes)])
        out.family("deltacast_conflations_total", "counter", "Times a slow consumer's pending changes were dropped for a later snapshot.", [([], sum { $0.conflations.load(ordering: .relaxed) })])
        out.family("deltacast_client_drift_total", "counter", "Clients whose state of a topic did not match a change's digest (endpoints with digest: true); each resubscribed for a snapshot.", [([], sum { $0.clientDrifts.load(ordering: .relaxed) })])
        out.family("deltacast_accept_failures_total", "counter", "accept() failures (out of file descriptors); the listener is retried every 100 ms, never in a busy loop.", [([], sum { $0.acceptFailures.load(ordering: .relaxed) })])
        out.family("deltacast_slow_consumer_closes_total", "counter", "Connections closed for making no write progress (limits.slow_consumer_timeout).", [([], sum { $0.slowConsumerCloses.load(ordering: .relaxed) })])
        out.family("deltacast_resumes_total", "counter", "Subscriptions that came with a cursor, by how they were brought up to date.", [
            ([("served", "journal")], sum { $0.resumesFromJournal.load(ordering: .relaxed) }), ([("served", "snapshot")], sum { $0.resumesBySnapshot.load(ordering: .relaxed) }),
        ])
        out.family("deltacast_refusals_total", "counter", "Requests and connections refused, by reason.", [
            ([("reason", "max_connections")], Double(metrics.refusedConnectionLimit.load(ordering: .relaxed))),
            ([("reason", "max_connections_per_ip")], Double(metrics.refusedPerIP.load(ordering: .relaxed))),
            ([("reason", "admin_unauthorized")], Double(metrics.adminUnauthorized.load(ordering: .relaxed))),
            ([("reason", "admin_forbidden")], Double(metrics.adminForbidden.load(ordering: .relaxed))),
            ([("reason", "max_connections_per_user")], Double(metrics.refusedPerUser.load(ordering: .relaxed))),
            ([("reason", "rate_limited")], Double(metrics.rateLimited.load(ordering: .relaxed))),
            ([("reason", "unauthenticated")], Double(metrics.unauthenticated.load(ordering: .relaxed))),
            ([("reason", "forbidden")], Double(metrics.forbidden.load(ordering: .relaxed))),
        ])
        out.family("deltacast_config_reloads_total", "counter", "Configuration reloads (SIGHUP, POST /deltacast/reload) by result; an error changed nothing.", [
            ([("result", "ok")], Double(metrics.reloadsSucceeded.load(ordering: .relaxed))),
            ([("result", "error")], Double(metrics.reloadsFailed.load(ordering: .relaxed))),
        ])
        let polls = metrics.polls.withLock { $0 }
        out.family("deltacast_upstream_polls_total", "counter", "Upstream polls by endpoint and outcome.",
                   polls.keys.sorted().flatMap { endpoint in polls[endpoint]!.keys.sorted().map { ([("endpoint", endpoint), ("outcome", $0)], Double(polls[endpoint]![$0]!)) } })
        let latencies = metrics.pollSeconds.withLock { $0 }
        out.histogram("deltacast_upstream_poll_seconds", "Upstream request durations by endpoint.", latencies.keys.sorted().map { ([("endpoint", $0)], latencies[$0]!) })
        let budgets = metrics.budgets.withLock { $0 }
        if !budgets.isEmpty {
            out.family("deltacast_upstream_budget_used_ratio", "gauge", "Requests started in the last second over this node's share of the origin's budget.",
                       budgets.map { ([("origin", $0.origin)], $0.usedRatio) })
            out.family("deltacast_upstream_budget_allowed_per_second", "gauge", "Requests per second the origin's budget allows this node now (lowered while the origin asked for Retry-After).",
                       budgets.map { ([("origin", $0.origin)], $0.allowedPerSecond) })
            out.family("deltacast_upstream_deferred_total", "counter", "Polls that waited for the origin's request budget.",
                       budgets.map { ([("origin", $0.origin)], Double($0.deferredTotal)) })
            out.family("deltacast_upstream_budget_waiting", "gauge", "Polls waiting for the origin's request budget now.",
                       budgets.map { ([("origin", $0.origin)], Double($0.waiting)) })
        }
        let indexes = metrics.changeIndex.withLock { $0 }
        if !indexes.isEmpty {
            let endpoints = indexes.keys.sorted()
            out.family("deltacast_upstream_change_index_reads_total", "counter", "Reads of an endpoint's change index.",
                       endpoints.map { ([("endpoint", $0)], Double(indexes[$0]!.reads)) })
            out.family("deltacast_upstream_change_index_triggers_total", "counter", "Topics polled at once because the change index named them.",
                       endpoints.map { ([("endpoint", $0)], Double(indexes[$0]!.triggered)) })
            out.family("deltacast_upstream_change_index_failures_total", "counter", "Change-index reads that failed, by reason (status, garbage, cursor_backwards, transport): topics fall back to their interval.",
                       endpoints.flatMap { endpoint in indexes[endpoint]!.failures.keys.sorted().map { ([("endpoint", endpoint), ("reason", $0)], Double(indexes[endpoint]!.failures[$0]!)) } })
        }
        let stretch = metrics.stretch.withLock { $0 }
        if !stretch.isEmpty {
            out.family("deltacast_upstream_interval_stretch_ratio", "gauge", "Time between an endpoint's polls over its interval, averaged over recent polls (1: kept; 3: a budget made it three times as long).",
                       stretch.keys.sorted().map { ([("endpoint", $0)], stretch[$0]!) })
        }
        if let cluster { out.cluster(cluster) }
        return out.text
    }
}

extension HTTPServer {
    /// The status page's and `deltacast top`'s view: the process, every endpoint with its
    /// topics (subscribers, cursor, last change and its size, upstream health), upstream polls
    /// by outcome with their median latency, and totals. Topics are listed by name (never by
    /// credential), at most 200 per endpoint, busiest first.
    func statusJSON() -> [UInt8] {
        let counters = loopCounters
        func sum(_ pick: (LoopCounters) -> Int) -> Int { counters.reduce(0) { $0 + pick($1) } }
        let topics = hub.allTopics
        let polls = metrics.polls.withLock { $0 }
        let latencies = metrics.pollSeconds.withLock { $0 }
        var out = "{\"uptime_s\":\(Int((MonotonicClock.milliseconds() - startedAt) / 1000)),\"rss_bytes\":\(Self.residentBytes())"
        out += ",\"connections\":{\"open\":\(openConnections.load(ordering: .relaxed)),\"http\":\(sum { $0.connectionsHTTP.load(ordering: .relaxed) })"
        for transport in Transport.allCases { out += ",\"\(transport.rawValue)\":\(sum { $0.connections[transport].current })" }
        out += "},\"deliveries\":{" + Transport.allCases.map { transport in "\"\(transport.rawValue)\":\(sum { $0.deliveries[transport].current })" }.joined(separator: ",") + "}"
        out += ",\"bytes_saved\":\(hub.statistics.savedBytes),\"conflations\":\(sum { $0.conflations.load(ordering: .relaxed) }),\"slow_consumer_closes\":\(sum { $0.slowConsumerCloses.load(ordering: .relaxed) })"
        out += ",\"endpoints\":["
        for (index, endpoint) in configuration.endpoints.enumerated() {
            if index > 0 { out += "," }
            let pattern = endpoint.path.text
            let own = topics.filter { $0.endpoint.path == endpoint.path }.map { ($0, $0.status()) }.sorted { $0.1.subscribers > $1.1.subscribers }
            out += "{\"path\":" + EventLog.quoted(pattern) + ",\"source\":\"\(endpoint.source.rawValue)\",\"topic_count\":\(own.count)"
            let outcomes = polls[pattern] ?? [:]
            out += ",\"polls\":{" + outcomes.keys.sorted().map { "\"\($0)\":\(outcomes[$0]!)" }.joined(separator: ",") + "}"
            if let histogram = latencies[pattern] {
                let (cumulative, _, count) = histogram.snapshot()
                let median = zip(histogram.bounds, cumulative).first { count > 0 && $0.1 * 2 >= count }?.0
                out += ",\"poll_p50_le_ms\":" + (median.map { String(Int($0 * 1000)) } ?? "null")
            }
            out += ",\"topics\":["
            for (offset, (topic, status)) in own.prefix(200).enumerated() {
                if offset > 0 { out += "," }
                out += "{\"name\":" + EventLog.quoted(topic.name) + ",\"subscribers\":\(status.subscribers)"
                out += ",\"by_transport\":{" + Transport.allCases.map { "\"\($0.rawValue)\":\(status.byTransport[$0])" }.joined(separator: ",") + "}"
                out += ",\"poll_failures\":\(status.pollFailures),\"next_poll_ms\":" + (status.nextPollIn.map(String.init) ?? "null")
                out += ",\"cursor\":" + (status.cursor.map { "\"\($0)\"" } ?? "null")
                out += ",\"last_change_ms_ago\":" + (status.millisecondsSinceChange.map(String.init) ?? "null")
                out += ",\"last_change_bytes\":\(status.lastChangeBytes),\"body_bytes\":\(status.bodyBytes),\"journal\":\(status.journalEntries)"
                if let problem = status.problem {
                    out += ",\"upstream\":\"error\",\"problem\":" + EventLog.quoted(problem.message)
                } else {
                    out += ",\"upstream\":\"ok\""
                }
                out += "}"
            }
            out += "]}"
        }
        let slowest = counters.flatMap { $0.slowest.withLock { $0 } }.sorted { $0.pendingBytes > $1.pendingBytes }.prefix(5)
        out += "],\"slowest_consumers\":[" + slowest.map {
            "{\"conn\":\($0.id),\"pending_bytes\":\($0.pendingBytes),\"mode\":\"\($0.mode)\",\"no_progress_ms\":\($0.idleMilliseconds)}"
        }.joined(separator: ",")
        out += "]"
        let budgets = metrics.budgets.withLock { $0 }
        let stretch = metrics.stretch.withLock { $0 }
        out += ",\"budgets\":[" + budgets.map { budget in
            "{\"origin\":" + EventLog.quoted(budget.origin) + ",\"rate_per_s\":\(budget.ratePerSecond),\"allowed_per_s\":\(budget.allowedPerSecond)"
                + ",\"used_ratio\":\((budget.usedRatio * 1000).rounded() / 1000),\"deferred\":\(budget.deferredTotal),\"waiting\":\(budget.waiting),\"slowed\":\(budget.slowed)}"
        }.joined(separator: ",") + "]"
        out += ",\"interval_stretch\":{" + stretch.keys.sorted().map { EventLog.quoted($0) + ":\((stretch[$0]! * 100).rounded() / 100)" }.joined(separator: ",") + "}"
        if let cluster {
            let status = cluster.status()
            out += ",\"cluster\":{\"node\":" + EventLog.quoted(status.node) + ",\"redis\":\"\(status.redis ? "up" : "down")\""
            out += ",\"nodes\":[" + status.nodes.map(EventLog.quoted).joined(separator: ",") + "]"
            out += ",\"leaders\":[" + status.leaders.prefix(1000).map { "{\"topic\":" + EventLog.quoted($0.topic) + ",\"node\":" + EventLog.quoted($0.node) + "}" }.joined(separator: ",") + "]"
            out += ",\"owned\":\(status.owned),\"redis_commands_per_second\":\(status.commandsPerSecond)"
            out += ",\"shards\":[" + status.shards.map { "{\"address\":" + EventLog.quoted($0.address) + ",\"slots\":" + EventLog.quoted($0.slots) + "}" }.joined(separator: ",") + "]}"
        }
        return Array((out + "}").utf8)
    }

    /// This process's resident set size (`/proc/self/statm`), bytes.
    static func residentBytes() -> Int {
        guard let file = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(file) }
        var size = 0, resident = 0
        guard withUnsafeMutablePointer(to: &size, { sizePointer in
            withUnsafeMutablePointer(to: &resident) { fscanf_two(file, sizePointer, $0) }
        }) else { return 0 }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    private static func fscanf_two(_ file: UnsafeMutablePointer<FILE>, _ a: UnsafeMutablePointer<Int>, _ b: UnsafeMutablePointer<Int>) -> Bool {
        var line = [CChar](repeating: 0, count: 128)
        guard fgets(&line, 128, file) != nil else { return false }
        let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
        guard fields.count >= 2, let first = Int(fields[0]), let second = Int(fields[1]) else { return false }
        a.pointee = first
        b.pointee = second
        return true
    }
}
