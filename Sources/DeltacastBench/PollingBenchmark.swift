import CSystemLinux
import DeltacastBase
import DeltacastClient
import DeltacastCommandLine
import DeltacastLoop
import DeltacastSimulator
import Foundation

/// `deltacast bench polling`: upstream polling at scale, the per-user case of real dashboards.
/// N topics (`/api/users/{id}/notifications` under `auth: passthrough`, one credential each)
/// polled every interval against the simulated API, by two pollers in turn, each on CPU 0:
/// 1. **deltacast**: a `deltacast serve` started here; N plain GETs with N credentials create the
///    topics (they linger an hour), and its poller keeps them fresh;
/// 2. **C libcurl-multi loop** (`--c-loop PATH`, built by `examples/bench/run.sh polling` from
///    `examples/bench/curl_poll_loop.c`): the same requests with the same `If-None-Match`, no
///    parsing, no diffing: the floor any poller pays.
/// The simulator runs in this process (run it under `taskset -c 1`) and times every request:
/// a poll is late by how much more than the interval passed since its topic's previous one.
/// Reported: polls/s, CPU per poll, lateness p50/p99, and the proxy's memory per topic.
enum PollingBenchmark {
    struct Options {
        var topics = 10_000
        var seconds = 30
        var interval = 1_000
        var maxConcurrent = 1_000
        var cLoop: String?
    }

    struct Measurement {
        var label: String
        var polls = 0
        var seconds = 0.0
        var cpuSeconds = 0.0
        var lateness: [UInt64] = []
        var bytesPerTopic: Double?
        var pollsPerSecond: Double { seconds > 0 ? Double(polls) / seconds : 0 }
        var cpuPerPoll: Double { polls > 0 ? cpuSeconds / Double(polls) * 1e6 : 0 }
    }

    static let port = 18_191

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        if let index = arguments.firstIndex(of: "--workload") {
            guard arguments.indices.contains(index + 1), arguments[index + 1] == "zipf" else {
                throw .init(message: "--workload: the one workload is zipf")
            }
            return try ZipfBenchmark.run(Array(arguments[..<index] + arguments[(index + 2)...]))
        }
        let args = try CommandLineArguments(arguments, flags: [], options: ["--topics", "--duration", "--interval-ms", "--max-concurrent", "--c-loop"])
        var options = Options()
        options.topics = Int(args.value("--topics") ?? "10000") ?? 0
        options.seconds = Int(args.value("--duration") ?? "30") ?? 0
        options.interval = Int(args.value("--interval-ms") ?? "1000") ?? 0
        options.maxConcurrent = Int(args.value("--max-concurrent") ?? "1000") ?? 0
        options.cLoop = args.value("--c-loop")
        // The simulator keeps at most 10,000 users.
        guard (1...10_000).contains(options.topics), (5...3600).contains(options.seconds), (100...60_000).contains(options.interval),
              (1...10_000).contains(options.maxConcurrent) else {
            throw .init(message: "--topics 1...10000, --duration 5...3600 seconds, --interval-ms 100...60000, --max-concurrent 1...10000, [--c-loop PATH]")
        }
        ProcessLimits.raiseOpenFiles()
        do {
            let simulator = try LegacySimulator(port: 0)
            try simulator.start()
            defer { simulator.stop() }
            var results = [try measureDeltacast(simulator, options)]
            if let path = options.cLoop { results.append(try measureCLoop(simulator, path: path, options)) }
            report(results, options)
            return .success
        } catch {
            printError("deltacast bench polling: \(error)")
            return .failure
        }
    }

    /// Counts the simulator's requests for `seconds` while `pid` polls; its CPU over the window.
    static func window(_ simulator: LegacySimulator, pid: Int32, _ options: Options, into result: inout Measurement) {
        simulator.pollLateness.withLock { $0 = PollLatenessLog(intervalNanoseconds: UInt64(options.interval) * 1_000_000) }
        let cpuBefore = HTTPBenchmark.cpuSeconds(pid)
        let start = MonotonicClock.nanoseconds()
        usleep(UInt32(options.seconds) * 1_000_000)
        let log = simulator.pollLateness.withLock { log in defer { log = nil }; return log }
        result.seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        result.cpuSeconds = HTTPBenchmark.cpuSeconds(pid) - cpuBefore
        result.polls = log?.requests ?? 0
        result.lateness = log?.lateness ?? []
    }

    static func measureDeltacast(_ simulator: LegacySimulator, _ options: Options) throws -> Measurement {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bench-polling-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try """
            listen: 127.0.0.1:\(port)
            upstream: { base: http://127.0.0.1:\(simulator.port), max_concurrent: \(options.maxConcurrent), timeout: 5s }
            endpoints:
              - path: /api/users/{id}/notifications
                auth: passthrough
                interval: \(options.interval)ms
                jitter: 0s
                linger: 1h
            server: { event_loops: 1 }
            limits: { max_topics: 20000 }
            """.write(to: directory.appendingPathComponent("deltacast.yaml"), atomically: true, encoding: .utf8)
        let server = try launchProxy(directory.appendingPathComponent("deltacast.yaml"))
        defer { server.terminate(); server.waitUntilExit() }
        let pid = server.processIdentifier
        let rssBefore = HTTPBenchmark.rssBytes(pid)
        try createTopics(options.topics)
        // One whole interval and two more seconds for the schedule to settle.
        usleep(UInt32(options.interval) * 1_000 + 2_000_000)
        var result = Measurement(label: "deltacast")
        window(simulator, pid: pid, options, into: &result)
        guard result.polls > 0 else { throw HTTPBenchmark.Failure(description: "the proxy sent the simulator no request in the window") }
        result.bytesPerTopic = (HTTPBenchmark.rssBytes(pid) - rssBefore) / Double(options.topics)
        return result
    }

    /// `deltacast serve -c CONFIGURATION` on CPU 0 (when `taskset` exists), listening on
    /// ``port``. A proxy left over from another run would answer the GETs and poll its own
    /// upstream: a port in use is refused.
    static func launchProxy(_ configuration: URL) throws -> Process {
        if let fd = try? HTTPBenchmark.connectLoopback(port: port) {
            close(fd)
            throw HTTPBenchmark.Failure(description: "127.0.0.1:\(port) is in use (a proxy left by another run?): end it first")
        }
        let pinned = FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
        let server = try HTTPBenchmark.launch(pinned ? "/usr/bin/taskset" : CommandLine.arguments[0],
                                              (pinned ? ["-c", "0", CommandLine.arguments[0]] : []) + ["serve", "-c", configuration.path])
        do { try HTTPBenchmark.waitUntilListening(port: port) } catch {
            server.terminate()
            server.waitUntilExit()
            throw error
        }
        return server
    }

    /// One plain GET per topic (each with its own credential, unless not), over 20 keep-alive connections
    /// (a cold GET is answered by the topic's first poll). Each must answer 200.
    static func createTopics(_ count: Int, path: (Int) -> String = { "/api/users/\($0)/notifications" }, credentials: Bool = true) throws {
        let sockets = try (0..<20).map { _ in try Socket.connect(port: port, receiveTimeoutSeconds: 10) }
        defer { for fd in sockets { close(fd) } }
        var next = 0
        while next < count {
            let batch = min(sockets.count, count - next)
            for index in 0..<batch {
                let user = next + index
                let authorization = credentials ? "Authorization: Bearer user-\(user)\r\n" : ""
                try FanoutBenchmark.sendAll(sockets[index], Array("GET \(path(user)) HTTP/1.1\r\nHost: bench\r\n\(authorization)\r\n".utf8))
            }
            for index in 0..<batch {
                let status = try readResponse(sockets[index])
                guard status == 200 else { throw HTTPBenchmark.Failure(description: "GET \(path(next + index)) answered \(status)") }
            }
            next += batch
        }
    }

    /// Reads one Content-Length framed response; returns its status.
    static func readResponse(_ fd: Int32) throws -> Int {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            if let headEnd = ByteSearch.first(of: [13, 10, 13, 10], in: buffer) {
                let head = String(decoding: buffer[..<headEnd], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
                if buffer.count >= headEnd + 4 + length { return Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0 }
            }
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { throw HTTPBenchmark.Failure(description: "the proxy closed a topic-creating connection") }
            buffer += chunk[0..<n]
        }
    }

    static func measureCLoop(_ simulator: LegacySimulator, path: String, _ options: Options) throws -> Measurement {
        let settle = options.interval / 1000 + 2
        let pinned = FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
        let loop = try HTTPBenchmark.launch(pinned ? "/usr/bin/taskset" : path, (pinned ? ["-c", "0", path] : [])
                                            + ["http://127.0.0.1:\(simulator.port)", "\(options.topics)", "\(options.interval)", "\(settle + options.seconds + 2)"])
        defer { loop.terminate(); loop.waitUntilExit() }
        usleep(UInt32(settle) * 1_000_000)
        var result = Measurement(label: "C libcurl-multi loop")
        window(simulator, pid: loop.processIdentifier, options, into: &result)
        return result
    }

    static func percentile(_ values: [UInt64], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1_000_000
    }

    static func report(_ results: [Measurement], _ options: Options) {
        func f(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
        let target = Double(options.topics) * 1000 / Double(options.interval)
        var lines = [
            "deltacast bench polling: \(options.topics) topics (one credential each) every \(options.interval) ms, \(options.seconds) s window, pollers on CPU 0",
            "| poller | polls/s | of target | CPU µs/poll | lateness p50 ms | p99 ms | max ms | RSS/topic B |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in results {
            lines.append("| \(m.label) | \(f(m.pollsPerSecond, 0)) | \(f(m.pollsPerSecond / target * 100))% | \(f(m.cpuPerPoll, 2)) | \(f(percentile(m.lateness, 0.5))) | \(f(percentile(m.lateness, 0.99))) | \(f(percentile(m.lateness, 1))) | \(m.bytesPerTopic.map { f($0, 0) } ?? "-") |")
        }
        if results.count == 2, results[1].cpuPerPoll > 0 {
            lines.append("deltacast / C loop, CPU per poll: \(f(results[0].cpuPerPoll / results[1].cpuPerPoll, 2))×")
        }
        print(lines.joined(separator: "\n"))
        let json = results.map { m in
            #"{"poller":"\#(m.label)","polls":\#(m.polls),"seconds":\#(f(m.seconds, 2)),"polls_per_s":\#(f(m.pollsPerSecond, 0)),"cpu_s":\#(f(m.cpuSeconds, 3)),"cpu_us_per_poll":\#(f(m.cpuPerPoll, 3)),"lateness_p50_ms":\#(f(percentile(m.lateness, 0.5), 2)),"lateness_p99_ms":\#(f(percentile(m.lateness, 0.99), 2)),"lateness_max_ms":\#(f(percentile(m.lateness, 1), 2)),"rss_per_topic":\#(m.bytesPerTopic.map { f($0, 0) } ?? "null")}"#
        }
        print(#"{"bench":"polling","topics":\#(options.topics),"interval_ms":\#(options.interval),"results":[\#(json.joined(separator: ","))]}"#)
    }
}
