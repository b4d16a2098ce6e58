import DeltacastBase
import DeltacastHub
import DeltacastLoop

extension HTTPServer {
    /// The interval a client polling each endpoint directly would use: the fixed interval, or
    /// an adaptive endpoint's minimum (the freshness its subscribers get at best), by pattern.
    func directIntervals() -> [String: Int64] {
        var intervals: [String: Int64] = [:]
        for endpoint in configuration.endpoints {
            intervals[endpoint.path.text] = (endpoint.adaptiveInterval?.min ?? endpoint.interval).wholeMilliseconds
        }
        return intervals
    }

    /// Takes the migration report's history sample when one is due (loop 0's sweep calls it).
    func sampleSavings(now: Int64) {
        let budgets = metrics.budgets.withLock { $0 }
        savings.sampleIfDue(now: now, wall: WallClock.milliseconds(), endpoints: { savings.withIndexReads(hub.savingsByEndpoint()) },
                            intervals: directIntervals(), budgetUsed: budgets.map(\.usedRatio).max())
    }

    /// `GET /deltacast/report`: what the proxy saved, measured since it started. Every endpoint,
    /// the 100 topics alive that saved the most, and the last hour's rates (one sample every 5 s).
    func reportJSON() -> [UInt8] {
        let now = MonotonicClock.milliseconds()
        let intervals = directIntervals()
        let topics = hub.allTopics.map { ($0.name, $0.pattern, $0.savingsCounts()) }
        let endpoints = savings.withIndexReads(hub.savingsByEndpoint())
        let delays = savings.delayHistograms()
        var total = SavingsCounts()
        var totalDirect = 0.0
        for (pattern, line) in endpoints {
            total.add(line)
            totalDirect += line.directRequests(intervalMilliseconds: intervals[pattern] ?? 1000)
        }
        var out = "{\"uptime_s\":\(Int((now - startedAt) / 1000)),\"totals\":" + Self.savingsLine(total, direct: totalDirect)
        out += ",\"endpoints\":["
        var first = true
        for endpoint in configuration.endpoints {
            let pattern = endpoint.path.text
            let interval = intervals[pattern] ?? 1000
            let line = endpoints[pattern] ?? SavingsCounts()
            if !first { out += "," }
            first = false
            out += "{\"path\":" + EventLog.quoted(pattern) + ",\"interval_ms\":\(interval),"
            out += Self.savingsLine(line, direct: line.directRequests(intervalMilliseconds: interval)).dropFirst().dropLast()
            if let histogram = delays[pattern] {
                let (cumulative, sum, count) = histogram.snapshot()
                func quantile(_ q: Double) -> String {
                    zip(histogram.bounds, cumulative).first { count > 0 && Double($0.1) >= q * Double(count) }.map { PrometheusText.format($0.0) } ?? "null"
                }
                out += ",\"detection\":{\"changes\":\(count),\"mean_s\":\(count > 0 ? PrometheusText.format((sum / Double(count) * 1000).rounded() / 1000) : "null")"
                out += ",\"p50_le_s\":\(quantile(0.5)),\"p90_le_s\":\(quantile(0.9))}"
            }
            out += "}"
        }
        out += "],\"topics\":["
        let ranked = topics.map { name, endpoint, counts -> (name: String, endpoint: String, savings: SavingsCounts, direct: Double) in
            (name, endpoint, counts, counts.directRequests(intervalMilliseconds: intervals[endpoint] ?? 1000))
        }.sorted { ($0.direct - Double($0.savings.upstreamRequests), $0.name) > ($1.direct - Double($1.savings.upstreamRequests), $1.name) }
        out += ranked.prefix(100).map { topic in
            "{\"name\":" + EventLog.quoted(topic.name) + ",\"endpoint\":" + EventLog.quoted(topic.endpoint) + ","
                + Self.savingsLine(topic.savings, direct: topic.direct).dropFirst()
        }.joined(separator: ",")
        out += "],\"history\":{\"period_s\":\(SavingsLedger.samplePeriodMilliseconds / 1000),\"samples\":["
        out += savings.samples().map { sample in
            "[\(sample.wallMilliseconds),\(Self.rounded(sample.upstreamPerSecond)),\(Self.rounded(sample.avoidedPerSecond)),"
                + (sample.budgetUsed.map { Self.rounded($0) } ?? "null") + "]"
        }.joined(separator: ",")
        return Array((out + "]}}").utf8)
    }

    private static func rounded(_ value: Double) -> String { PrometheusText.format((value * 100).rounded() / 100) }

    /// One line's numbers as a JSON object.
    static func savingsLine(_ line: SavingsCounts, direct: Double) -> String {
        let avoided = direct - Double(line.upstreamRequests)
        var out = "{\"upstream_requests\":\(line.upstreamRequests),\"direct_requests\":\(rounded(direct))"
        out += ",\"avoided_requests\":\(rounded(avoided)),\"avoided_ratio\":" + (direct > 0 ? rounded(avoided / direct) : "null")
        out += ",\"mirrored_gets\":\(line.mirroredGets),\"pushes\":\(line.pushes),\"subscriber_s\":\(line.subscriberMilliseconds / 1000)"
        out += ",\"bytes_sent\":\(line.bytesSent),\"bytes_full\":\(line.bytesFull)"
        out += ",\"polls_answered\":\(line.pollsAnswered),\"polls_changed\":\(line.pollsChanged),\"no_change_ratio\":"
        out += line.pollsAnswered > 0 ? rounded(Double(line.pollsAnswered - min(line.pollsChanged, line.pollsAnswered)) / Double(line.pollsAnswered)) : "null"
        return out + "}"
    }

    /// The migration report's families for `/metrics`, by endpoint.
    func savingsMetrics(_ out: inout PrometheusText) {
        let intervals = directIntervals()
        let endpoints = savings.withIndexReads(hub.savingsByEndpoint()).sorted { $0.key < $1.key }
        func family(_ name: String, _ type: String, _ help: String, _ value: (String, SavingsCounts) -> [([(String, String)], Double)]) {
            out.family(name, type, help, endpoints.flatMap { value($0.key, $0.value) })
        }
        family("deltacast_upstream_requests_total", "counter", "Requests sent to the upstream (polls, cold GETs, refreshes, change-index reads).") {
            [([("endpoint", $0)], Double($1.upstreamRequests))]
        }
        family("deltacast_direct_requests_total", "counter", "Requests the same clients would have sent the upstream polling it directly: each GET, and one per interval (an adaptive endpoint's minimum) per subscriber while subscribed.") {
            [([("endpoint", $0)], ($1.directRequests(intervalMilliseconds: intervals[$0] ?? 1000) * 1000).rounded() / 1000)]
        }
        family("deltacast_client_requests_total", "counter", "Client requests the proxy answered itself: plain GETs from its state, and events pushed.") {
            [([("endpoint", $0), ("kind", "get")], Double($1.mirroredGets)), ([("endpoint", $0), ("kind", "push")], Double($1.pushes))]
        }
        family("deltacast_client_bytes_total", "counter", "Bytes sent to clients (push events and GET bodies) and what full bodies would have been.") {
            [([("endpoint", $0), ("kind", "sent")], Double($1.bytesSent)), ([("endpoint", $0), ("kind", "full")], Double($1.bytesFull))]
        }
        family("deltacast_subscriber_seconds_total", "counter", "Time summed over push subscribers while subscribed.") {
            [([("endpoint", $0)], Double($1.subscriberMilliseconds / 1000))]
        }
        family("deltacast_polls_changed_total", "counter", "Polls answered (a body or a 304), and those that changed the state.") {
            [([("endpoint", $0), ("result", "answered")], Double($1.pollsAnswered)), ([("endpoint", $0), ("result", "changed")], Double($1.pollsChanged))]
        }
        out.histogram("deltacast_detection_delay_bound_seconds", "How long a change could have waited upstream: from the start of the poll before the one that found it to its commit.",
                      savings.delayHistograms().sorted { $0.key < $1.key }.map { ([("endpoint", $0.key)], $0.value) })
    }
}
