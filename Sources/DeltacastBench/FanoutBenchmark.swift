import CSystemLinux
import DeltacastCommandLine
import DeltacastLoop
import DeltacastWire
import Foundation

/// `deltacast bench fanout|throughput|connections`: the load generator (``LoadGenerator``)
/// against Deltacast (a `deltacast serve` started here, pinned to CPU 0 when `taskset` exists,
/// with a `source: publish` endpoint) or, given `--subscribe` and `--publish` URLs, against any
/// server (Nchan, Pushpin: `examples/bench/run.sh` starts them). Run it under `taskset -c 1`.
enum FanoutBenchmark {
    static let usage = """
        --transport ws|sse|poll  --subscribers N (1...19000)  --messages M  --rate R  --settle S (fanout: S unmeasured messages first, default 20)  --window W (throughput)
        --size BYTES (message size, default 200, at most 4000000)  --diff snapshot|json-patch (Deltacast only)  --sources K (127.0.0.1..K)
        --subscribe URL [--subscribe URL]... (subscribers go round them) --publish URL [--publish-header 'Name: value']... [--body TEMPLATE ({message}, {message_json}: quoted, {message_escaped}: escaped, unquoted)]
        [--server-binary PATH (the deltacast to serve, e.g. an earlier build; default this one)] [--poll-style deltacast|nchan] [--pid PID]... [--label NAME] [--phase-seconds S] [--connect-rate PER_SECOND] [--pipeline N (publishes in flight, 1...64)] [--scrape-ms MS (GET /metrics every MS during the run)]
        """

    static func run(_ mode: LoadGenerator.Mode, _ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: [
            "--transport", "--subscribers", "--messages", "--rate", "--window", "--size", "--diff", "--sources",
            "--settle", "--server-binary", "--subscribe", "--publish", "--publish-header", "--body", "--poll-style", "--pid", "--label", "--phase-seconds", "--connect-rate", "--pipeline", "--scrape-ms",
        ])
        let transport = args.value("--transport") ?? "ws"
        let subscribers = Int(args.value("--subscribers") ?? "1000") ?? 0
        let messages = Int(args.value("--messages") ?? (mode == .throughput ? "1000" : "100")) ?? 0
        let rate = Int(args.value("--rate") ?? "10") ?? 0
        let window = Int(args.value("--window") ?? "8") ?? 0
        let size = Int(args.value("--size") ?? "200") ?? 0
        let diff = args.value("--diff") ?? "snapshot"
        let sources = Int(args.value("--sources") ?? "1") ?? 0
        let phase = Int(args.value("--phase-seconds") ?? "60") ?? 0
        let settle = Int(args.value("--settle") ?? "20") ?? -1
        guard ["ws", "sse", "poll"].contains(transport), (1...19_000).contains(subscribers), (1...1_000_000).contains(messages),
              (1...100_000).contains(rate), (1...10_000).contains(window), (80...4_000_000).contains(size),
              ["json-patch", "snapshot"].contains(diff), (1...254).contains(sources), (5...3600).contains(phase), (0...1000).contains(settle) else {
            throw .init(message: "expected:\n" + usage)
        }
        let binary = args.value("--server-binary") ?? CommandLine.arguments[0]
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw .init(message: "--server-binary \(binary): not an executable file")
        }
        ProcessLimits.raiseOpenFiles()
        var server: Process?
        var directory: URL?
        defer {
            if let server { server.terminate(); server.waitUntilExit() }
            if let directory { try? FileManager.default.removeItem(at: directory) }
        }
        let subscribe: LoadGenerator.Endpoint, publish: LoadGenerator.Endpoint
        var all: [LoadGenerator.Endpoint] = []
        var headers = args.values("--publish-header")
        var pids = args.values("--pid").compactMap { Int32($0) }
        if let url = args.value("--subscribe") {
            guard let parsed = LoadGenerator.Endpoint(url), let target = args.value("--publish").flatMap(LoadGenerator.Endpoint.init) else {
                throw .init(message: "--subscribe and --publish take http://HOST:PORT/PATH URLs")
            }
            subscribe = parsed
            publish = target
            all = args.values("--subscribe").compactMap(LoadGenerator.Endpoint.init)
        } else {
            do {
                let started = try startDeltacast(diff: diff, binary: binary)
                server = started.process
                directory = started.directory
                pids.append(started.process.processIdentifier)
            } catch {
                printError("deltacast bench \(mode.rawValue): \(error)")
                return .failure
            }
            let topic = "/bench/fanout"
            subscribe = LoadGenerator.Endpoint(transport == "poll" ? "http://127.0.0.1:\(port)/deltacast/poll?topic=\(topic)" : "http://127.0.0.1:\(port)\(topic)")!
            publish = LoadGenerator.Endpoint("http://127.0.0.1:\(port)/deltacast/publish?topic=\(topic)")!
            headers.append("Authorization: Bearer \(token)")
        }
        var options = LoadGenerator.Options(subscribe: subscribe)
        options.subscribeAll = all
        options.mode = mode
        options.transport = transport
        options.pollStyle = args.value("--poll-style") ?? "deltacast"
        options.subscribers = subscribers
        options.messages = messages
        options.rate = rate
        options.settle = settle
        options.window = window
        options.size = size
        options.publish = publish
        options.publishHeaders = headers
        options.bodyTemplate = args.value("--body") ?? "{message}"
        options.pids = pids
        options.sources = sources
        options.label = args.value("--label") ?? (server != nil ? "deltacast (\(diff))" : "external")
        options.phaseSeconds = phase
        options.connectRate = Int(args.value("--connect-rate") ?? "0") ?? 0
        options.pipeline = max(1, min(Int(args.value("--pipeline") ?? "1") ?? 1, 64))
        options.scrapeMilliseconds = max(0, min(Int(args.value("--scrape-ms") ?? "0") ?? 0, 60_000))
        do {
            let report = try LoadGenerator(options: options).measure()
            print(report.table)
            print(report.json)
            return report.lost == 0 ? .success : .failure
        } catch {
            printError("deltacast bench \(mode.rawValue): \(error)")
            return .failure
        }
    }

    static let port = 18_190
    static let token = "bench-admin-token-0123456789"

    /// `binary serve` with one `source: publish` endpoint, pinned to CPU 0 when possible. An
    /// earlier build given as `binary` is measured by this load generator, not by its own.
    static func startDeltacast(diff: String, binary: String) throws -> (process: Process, directory: URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try """
            listen: 127.0.0.1:\(port)
            endpoints:
              - path: /bench/{room}
                source: publish
                diff: \(diff)
            admin: { token: \(token) }
            server: { event_loops: 1, idle_timeout: 10m, header_timeout: 10m, max_wait: 10m }
            limits: { max_connections: 20000, max_connections_per_ip: 20000, max_message: 4MiB }
            """.write(to: directory.appendingPathComponent("deltacast.yaml"), atomically: true, encoding: .utf8)
        let pinned = FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
        let server = try HTTPBenchmark.launch(pinned ? "/usr/bin/taskset" : binary,
                                              (pinned ? ["-c", "0", binary] : []) + ["serve", "-c", directory.appendingPathComponent("deltacast.yaml").path])
        try HTTPBenchmark.waitUntilListening(port: port)
        return (server, directory)
    }

    /// Publishes `body` to `topic` on the keep-alive connection `fd`; waits for its 200.
    static func publish(fd: Int32, body: String, topic: String, token: String) throws {
        let request = "POST /deltacast/publish?topic=\(topic) HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        try sendAll(fd, Array(request.utf8))
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while response.last != UInt8(ascii: "}") {
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { throw HTTPBenchmark.Failure(description: "the publish connection closed") }
            response += chunk[0..<n]
        }
        guard response.starts(with: Array("HTTP/1.1 200".utf8)) else {
            throw HTTPBenchmark.Failure(description: "publish refused: \(String(decoding: response, as: UTF8.self))")
        }
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw HTTPBenchmark.Failure(description: "send failed: errno \(errno)") }
            offset += n
        }
    }

    /// The decimal number right after `key` in `bytes` (no JSON parse on the receive path).
    static func number(after key: [UInt8], in bytes: some Collection<UInt8>) -> Int? {
        Array(bytes).withUnsafeBufferPointer { LoadGenerator.number($0, key, 0..<$0.count) }
    }

    static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
