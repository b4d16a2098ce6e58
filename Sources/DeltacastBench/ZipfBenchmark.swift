import DeltacastBase
import DeltacastCommandLine
import DeltacastLoop
import DeltacastSimulator
import Foundation

/// `deltacast bench polling --workload zipf`: adaptive intervals against fixed ones at the same
/// upstream request rate.
///
/// The simulator (in this process) holds N documents; document *i* changes at random (Poisson)
/// times at 1/(*i* + 1) per second: one every second, a few every few seconds, most about once
/// an hour or less (about 9.8 changes a second in all for 10,000). A `deltacast serve` on CPU 0
/// mirrors `/items/{id}`; one GET per topic creates it, and it lingers for the whole run.
///
/// Each round runs the proxy twice on a fresh simulator and the same sequence of changes:
/// first with `interval: { min, max }`, whose upstream request rate is measured, then with the
/// fixed interval that makes the same rate (N / rate). Each run warms up (the adaptive
/// intervals learn), then measures for a window: every change made in the window is followed
/// until the proxy reads the document again (the run goes on for up to one longest interval and
/// 10 s after the window, so no change of the window goes unread), and the time from the change
/// to that read is its detection delay. The commit follows the read within the poll's handling.
enum ZipfBenchmark {
    struct Options {
        var topics = 10_000
        var warmup = 120
        var window = 90
        var rounds = 1
        var minimum: Int64 = 250
        var maximum: Int64 = 60_000
        var out = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bench-zipf").path
    }

    struct Run {
        var requestsPerSecond = 0.0
        /// (topic index, delay in seconds) of each change in the window.
        var delays: [(topic: Int, seconds: Double)] = []
        var unread = 0
        var median: Double { percentile(delays.map(\.seconds), 0.5) }
        var p99: Double { percentile(delays.map(\.seconds), 0.99) }
    }

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--topics", "--warmup", "--duration", "--rounds", "--min-ms", "--max-ms", "--out"])
        var options = Options()
        options.topics = Int(args.value("--topics") ?? "10000") ?? 0
        options.warmup = Int(args.value("--warmup") ?? "120") ?? -1
        options.window = Int(args.value("--duration") ?? "90") ?? 0
        options.rounds = Int(args.value("--rounds") ?? "1") ?? 0
        options.minimum = Int64(args.value("--min-ms") ?? "250") ?? 0
        options.maximum = Int64(args.value("--max-ms") ?? "60000") ?? 0
        if let out = args.value("--out") { options.out = out }
        guard (10...50_000).contains(options.topics), (0...7200).contains(options.warmup), (10...3600).contains(options.window),
              (1...20).contains(options.rounds), (10...60_000).contains(options.minimum), (options.minimum...3_600_000).contains(options.maximum) else {
            throw .init(message: "--topics 10...50000, --warmup 0...7200 s, --duration 10...3600 s, --rounds 1...20, --min-ms 10...60000, --max-ms min...3600000")
        }
        ProcessLimits.raiseOpenFiles()
        do {
            try FileManager.default.createDirectory(atPath: options.out, withIntermediateDirectories: true)
            var rounds: [(adaptive: Run, fixed: Run, fixedInterval: Int64)] = []
            for round in 0..<options.rounds {
                let adaptive = try measure(interval: "{ min: \(options.minimum)ms, max: \(options.maximum)ms }", longest: options.maximum, seed: UInt64(1000 + round), options)
                let fixedInterval = max(options.minimum, Int64(Double(options.topics) / max(adaptive.requestsPerSecond, 0.001) * 1000))
                let fixed = try measure(interval: "\(fixedInterval)ms", longest: fixedInterval, seed: UInt64(1000 + round), options)
                rounds.append((adaptive, fixed, fixedInterval))
                if round == 0 { try plot(adaptive, fixed, fixedInterval: fixedInterval, options) }
                report(rounds, options)
            }
            return .success
        } catch {
            printError("deltacast bench polling --workload zipf: \(error)")
            return .failure
        }
    }

    /// One run of the proxy at `interval` on a fresh simulator.
    static func measure(interval: String, longest: Int64, seed: UInt64, _ options: Options) throws -> Run {
        let simulator = try LegacySimulator(port: 0)
        try simulator.start()
        defer { simulator.stop() }
        for topic in 0..<options.topics { simulator.store("/items/\(topic)", json: Array(#"{"id":\#(topic),"v":0}"#.utf8)) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bench-zipf-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = PollingBenchmark.port
        try """
            listen: 127.0.0.1:\(port)
            upstream: { base: http://127.0.0.1:\(simulator.port), max_concurrent: 64, timeout: 5s }
            server: { event_loops: 1 }
            limits: { max_topics: \(options.topics + 1000) }
            endpoints:
              - path: /items/{id}
                interval: \(interval)
                jitter: 0ms
                linger: 2h
            """.write(to: directory.appendingPathComponent("deltacast.yaml"), atomically: true, encoding: .utf8)
        let server = try PollingBenchmark.launchProxy(directory.appendingPathComponent("deltacast.yaml"))
        defer { server.terminate(); server.waitUntilExit() }
        try PollingBenchmark.createTopics(options.topics, path: { "/items/\($0)" }, credentials: false)

        var changes = ZipfChanges(topics: options.topics, seed: seed)
        let began = MonotonicClock.nanoseconds()
        func second(_ s: Int) -> UInt64 { began + UInt64(s) * 1_000_000_000 }
        changes.drive(simulator, until: second(options.warmup), from: began)
        simulator.detections.withLock { $0 = DetectionLog() }
        changes.drive(simulator, until: second(options.warmup + options.window), from: began)
        let windowEnd = second(options.warmup + options.window)
        let reads = simulator.detections.withLock { $0?.reads ?? 0 }
        // Changes of the window are read at most one longest interval later (and the time a poll takes).
        changes.drive(simulator, until: windowEnd + UInt64(longest + 10_000) * 1_000_000, from: began)
        let log = simulator.detections.withLock { log in defer { log = nil }; return log } ?? DetectionLog()
        var run = Run()
        run.requestsPerSecond = Double(reads) / Double(options.window)
        let windowStart = second(options.warmup)
        for detection in log.detected where detection.changedAt < windowEnd && detection.changedAt >= windowStart {
            run.delays.append((Int(detection.path.dropFirst("/items/".count)) ?? 0, Double(detection.delay) / 1e9))
        }
        run.unread = log.undetected.filter { $0.changedAt < windowEnd }.count
        return run
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    static func report(_ rounds: [(adaptive: Run, fixed: Run, fixedInterval: Int64)], _ options: Options) {
        func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
        var lines = ["deltacast bench polling --workload zipf: \(options.topics) topics, topic i changing at 1/(i+1) per second; adaptive { min: \(options.minimum)ms, max: \(options.maximum)ms } against the fixed interval of the same request rate; \(options.warmup) s warm-up, \(options.window) s window",
                     "| round | upstream requests/s (adaptive / fixed) | fixed interval | median delay (adaptive / fixed) | p99 delay (adaptive / fixed) | changes in the window (adaptive / fixed) | unread |",
                     "|---:|---:|---:|---:|---:|---:|---:|"]
        for (index, round) in rounds.enumerated() {
            lines.append("| \(index + 1) | \(f(round.adaptive.requestsPerSecond, 0)) / \(f(round.fixed.requestsPerSecond, 0)) | \(f(Double(round.fixedInterval) / 1000, 1)) s | \(f(round.adaptive.median)) s / \(f(round.fixed.median)) s | \(f(round.adaptive.p99)) s / \(f(round.fixed.p99)) s | \(round.adaptive.delays.count) / \(round.fixed.delays.count) | \(round.adaptive.unread) / \(round.fixed.unread) |")
        }
        if let first = rounds.first {
            lines.append("| changes per second | adaptive: changes, median delay | fixed: changes, median delay |")
            lines.append("|---|---:|---:|")
            for (low, high) in decades {
                let a = first.adaptive.delays.filter { (low..<high).contains(rate($0.topic)) }.map(\.seconds)
                let b = first.fixed.delays.filter { (low..<high).contains(rate($0.topic)) }.map(\.seconds)
                lines.append("| \(low)–\(high) | \(a.count), \(f(percentile(a, 0.5))) s | \(b.count), \(f(percentile(b, 0.5))) s |")
            }
        }
        let medians = rounds.map { $0.adaptive.median / $0.fixed.median }.sorted()
        let p99s = rounds.map { $0.adaptive.p99 / $0.fixed.p99 }.sorted()
        lines.append("adaptive / fixed at the same request rate: median delay \(f(medians[medians.count / 2], 3))× (range \(f(medians[0], 3))–\(f(medians[medians.count - 1], 3))), p99 \(f(p99s[p99s.count / 2], 3))× (range \(f(p99s[0], 3))–\(f(p99s[p99s.count - 1], 3))); plot: \(options.out)/zipf-delay.svg")
        print(lines.joined(separator: "\n"))
        let json = rounds.map { r in
            #"{"adaptive_rps":\#(f(r.adaptive.requestsPerSecond, 1)),"fixed_rps":\#(f(r.fixed.requestsPerSecond, 1)),"fixed_interval_ms":\#(r.fixedInterval),"adaptive_p50_s":\#(f(r.adaptive.median, 3)),"fixed_p50_s":\#(f(r.fixed.median, 3)),"adaptive_p99_s":\#(f(r.adaptive.p99, 3)),"fixed_p99_s":\#(f(r.fixed.p99, 3)),"changes":[\#(r.adaptive.delays.count),\#(r.fixed.delays.count)],"unread":[\#(r.adaptive.unread),\#(r.fixed.unread)]}"#
        }
        print(#"{"bench":"polling-zipf","topics":\#(options.topics),"rounds":[\#(json.joined(separator: ","))]}"#)
        fflush(nil)
    }

    static let decades: [(Double, Double)] = [(0.1, 1.01), (0.01, 0.1), (0.001, 0.01), (0.0001, 0.001), (0.00001, 0.0001)]
    static func rate(_ topic: Int) -> Double { 1 / Double(topic + 1) }

    /// The median delay by change-rate decade, log-log, one line per run: `zipf-delay.svg`.
    static func plot(_ adaptive: Run, _ fixed: Run, fixedInterval: Int64, _ options: Options) throws {
        let (width, height, left, bottom) = (640.0, 400.0, 70.0, 50.0)
        func x(_ rate: Double) -> Double { left + (log10(rate) + 5) / 5 * (width - left - 20) }
        func y(_ seconds: Double) -> Double { height - bottom - (log10(max(seconds, 0.01)) + 2) / 4 * (height - bottom - 20) }
        var svg = [#"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="400" font-family="sans-serif" font-size="12">"#,
                   #"<rect width="640" height="400" fill="white"/>"#]
        for exponent in -5...0 {
            let at = x(pow(10, Double(exponent)))
            let label = exponent == 0 ? "1" : "1e\(exponent)"
            svg.append(#"<line x1="\#(Int(at))" y1="20" x2="\#(Int(at))" y2="\#(Int(height - bottom))" stroke="lightgray"/>"#)
            svg.append(#"<text x="\#(Int(at))" y="\#(Int(height - bottom + 18))" text-anchor="middle">\#(label)/s</text>"#)
        }
        for (seconds, label) in [(0.01, "10 ms"), (0.1, "100 ms"), (1, "1 s"), (10, "10 s"), (100, "100 s")] {
            svg.append(#"<line x1="\#(Int(left))" y1="\#(Int(y(seconds)))" x2="\#(Int(width - 20))" y2="\#(Int(y(seconds)))" stroke="lightgray"/>"#)
            svg.append(#"<text x="\#(Int(left - 6))" y="\#(Int(y(seconds) + 4))" text-anchor="end">\#(label)</text>"#)
        }
        svg.append(#"<text x="\#(Int((width + left) / 2))" y="\#(Int(height - 12))" text-anchor="middle">how often the topic changes</text>"#)
        svg.append(#"<text x="16" y="175" transform="rotate(-90 16 175)" text-anchor="middle">median detection delay</text>"#)
        let series = [("adaptive { min: \(options.minimum)ms, max: \(options.maximum)ms }", adaptive, "green"),
                      ("fixed \(String(format: "%.1f", Double(fixedInterval) / 1000)) s (same request rate)", fixed, "firebrick")]
        for (index, (label, run, color)) in series.enumerated() {
            let points = decades.compactMap { low, high -> (Double, Double)? in
                let inside = run.delays.filter { (low..<high).contains(rate($0.topic)) }.map(\.seconds)
                return inside.isEmpty ? nil : ((low * min(high, 1)).squareRoot(), percentile(inside, 0.5))
            }
            svg.append(#"<polyline fill="none" stroke="\#(color)" stroke-width="2" points="\#(points.map { "\(Int(x($0.0))),\(Int(y($0.1)))" }.joined(separator: " "))"/>"#)
            for point in points { svg.append(#"<circle cx="\#(Int(x(point.0)))" cy="\#(Int(y(point.1)))" r="3" fill="\#(color)"/>"#) }
            svg.append(#"<text x="\#(Int(width - 30))" y="\#(40 + 16 * index)" text-anchor="end" fill="\#(color)">\#(label)</text>"#)
        }
        svg.append("</svg>")
        try (svg.joined(separator: "\n") + "\n").write(toFile: options.out + "/zipf-delay.svg", atomically: true, encoding: .utf8)
    }
}

/// The change times of the Zipf workload: topic i at Poisson times of rate 1/(i + 1) per second,
/// from a seeded generator, so two runs see the same sequence.
struct ZipfChanges {
    private var random: SplitMix64
    /// (due, seconds from the start; topic), sorted by due, the next last.
    private var pending: [(due: Double, topic: Int)] = []
    private var version = 0

    init(topics: Int, seed: UInt64) {
        random = SplitMix64(seed: seed)
        for topic in 0..<topics { pending.append((next(after: 0, topic: topic), topic)) }
        pending.sort { $0.due > $1.due }
    }

    private mutating func next(after time: Double, topic: Int) -> Double {
        let uniform = Double(random.next() >> 11) / Double(1 << 53)
        return time - log(1 - uniform) * Double(topic + 1)
    }

    /// Makes the changes due before `deadline` (monotonic ns) at their times, then returns.
    mutating func drive(_ simulator: LegacySimulator, until deadline: UInt64, from start: UInt64) {
        while let first = pending.last {
            let at = start + UInt64(first.due * 1e9)
            if at >= deadline { break }
            let now = MonotonicClock.nanoseconds()
            if at > now { usleep(UInt32(min(at - now, 1_000_000_000) / 1000)); continue }
            version += 1
            simulator.store("/items/\(first.topic)", json: Array(#"{"id":\#(first.topic),"v":\#(version)}"#.utf8))
            pending.removeLast()
            // About ten changes a second: a binary search and an insertion into 10,000 are cheap.
            let due = next(after: first.due, topic: first.topic)
            var low = 0, high = pending.count
            while low < high {
                let middle = (low + high) / 2
                if pending[middle].due > due { low = middle + 1 } else { high = middle }
            }
            pending.insert((due, first.topic), at: low)
        }
        let now = MonotonicClock.nanoseconds()
        if deadline > now { usleep(UInt32((deadline - now) / 1000)) }
    }
}

/// A small seeded generator (SplitMix64), for repeatable workloads.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_B9E4
        z = (z ^ (z >> 27)) &* 0x94D4_9BA1_33B8_49EB
        return z ^ (z >> 31)
    }
}
