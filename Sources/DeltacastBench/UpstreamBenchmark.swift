import CSystemLinux
import DeltacastBase
import DeltacastClient
import DeltacastCommandLine
import DeltacastConfig
import DeltacastLoop
import DeltacastPolling
import DeltacastServer
import DeltacastSimulator
import Foundation

/// `deltacast bench upstream`: what the proxy saves the legacy API and what it costs in latency.
/// The simulated API's `/api/prices` (3 of 20 rows change every second) is read by N clients
/// for D seconds, twice in one run:
/// 1. **direct**: each client polls the API every interval with `If-None-Match` (a well-behaved
///    legacy dashboard);
/// 2. **push**: the same clients subscribe over SSE to the proxy, which polls the API itself
///    once per interval.
/// Reported for each: upstream requests and body bytes, bytes received by the clients, and
/// latency from a change appearing upstream to a client seeing it (p50/p99); for push also the
/// proxy's own overhead: from the upstream serving the changed body to the client receiving it.
/// Everything runs in this process (simulator, proxy, clients); the clock is CLOCK_MONOTONIC.
enum UpstreamBenchmark {
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--clients", "--duration", "--interval-ms"])
        let clients = Int(args.value("--clients") ?? "1000") ?? 0
        let duration = Int(args.value("--duration") ?? "60") ?? 0
        let interval = Int(args.value("--interval-ms") ?? "1000") ?? 0
        guard (1...9_000).contains(clients), (5...3600).contains(duration), (100...60_000).contains(interval) else {
            throw .init(message: "--clients 1...9000, --duration 5...3600 seconds, --interval-ms 100...60000")
        }
        ProcessLimits.raiseOpenFiles()
        do {
            let simulator = try LegacySimulator(port: 0)
            try simulator.start()
            defer { simulator.stop() }
            let direct = try measure(simulator: simulator, port: simulator.port, clients: clients, seconds: duration, interval: interval, push: false)
            let configuration = try Configuration.load(text: """
                listen: 127.0.0.1:0
                upstream: { base: http://127.0.0.1:\(simulator.port) }
                endpoints:
                  - path: /api/prices
                    interval: \(interval)ms
                    array_keys: { /items: id }
                    ignore: [/generatedAt]
                server: { event_loops: 1 }
                limits: { max_connections_per_ip: 20000 }
                """, file: "bench-upstream.yaml", environment: [:])
            let server = try HTTPServer(configuration: configuration, topicSource: UpstreamPolling(configuration: configuration))
            let port = try server.start()
            defer { server.shutdown() }
            let push = try measure(simulator: simulator, port: port, clients: clients, seconds: duration, interval: interval, push: true)
            report(direct: direct, push: push, clients: clients, seconds: duration, interval: interval)
            return push.failed == 0 && direct.failed == 0 ? .success : .failure
        } catch {
            printError("deltacast bench upstream: \(error)")
            return .failure
        }
    }

    struct Measurement {
        var upstreamRequests = 0
        var upstreamBytes = 0
        var clientBytes = 0
        var failed = 0
        var updates = 0
        var latencies: [UInt64] = []
        var overheads: [UInt64] = []
    }

    final class Client {
        let fd: Int32
        var buffer: [UInt8] = []
        var version = 0
        var etag: String?
        var due: UInt64
        var waiting = false
        init(fd: Int32, due: UInt64) { self.fd = fd; self.due = due }
    }

    static func measure(simulator: LegacySimulator, port: Int, clients count: Int, seconds: Int, interval: Int, push: Bool) throws -> Measurement {
        var result = Measurement()
        let start = MonotonicClock.nanoseconds()
        let intervalNs = UInt64(interval) * 1_000_000
        let epoll = epoll_create1(0)
        defer { close(epoll) }
        var clients: [Client] = []
        for index in 0..<count {
            guard let fd = try? Socket.connect(port: port, receiveTimeoutSeconds: 10) else { result.failed += 1; continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let client = Client(fd: fd, due: start + intervalNs * UInt64(index) / UInt64(count))
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = UInt64(clients.count)
            epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
            clients.append(client)
            if push { try FanoutBenchmark.sendAll(fd, PushRequest.eventStream(target: "/api/prices", host: "bench")) }
        }
        defer { for client in clients { close(client.fd) } }
        // Counting starts once every client is connected (and, for push, subscribed).
        let before = simulator.totals.withLock { $0 }
        let measuredFrom = MonotonicClock.nanoseconds()
        let end = measuredFrom + UInt64(seconds) * 1_000_000_000
        var events = [epoll_event](repeating: epoll_event(), count: 512)
        var scratch = [UInt8](repeating: 0, count: 256 * 1024)
        let versionKey = Array(#""version":"#.utf8), patchKey = Array(#""/version","value":"#.utf8)

        func saw(_ version: Int, _ client: Client, _ now: UInt64) {
            guard version > client.version else { return }
            let first = client.version == 0
            client.version = version
            guard !first, now >= measuredFrom, let times = simulator.versionTimes.withLock({ $0[version] }) else { return }
            result.updates += 1
            result.latencies.append(now > times.created ? now - times.created : 0)
            if push, let served = times.served { result.overheads.append(now > served ? now - served : 0) }
        }

        while true {
            let now = MonotonicClock.nanoseconds()
            if now >= end { break }
            if !push {
                for client in clients where !client.waiting && client.due <= now {
                    try FanoutBenchmark.sendAll(client.fd, PushRequest.get(target: "/api/prices", host: "bench", headers: client.etag.map { ["If-None-Match: \($0)"] } ?? []))
                    client.waiting = true
                    client.due += intervalNs
                }
            }
            let ready = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, Int32($0.count), 5) }
            guard ready > 0 else { continue }
            for index in 0..<Int(ready) {
                let client = clients[Int(events[index].data.u64)]
                while true {
                    let n = scratch.withUnsafeMutableBytes { read(client.fd, $0.baseAddress, $0.count) }
                    guard n > 0 else { break }
                    let received = MonotonicClock.nanoseconds()
                    if received >= measuredFrom { result.clientBytes += n }
                    client.buffer += scratch[0..<n]
                    if push {
                        var from = 0
                        while let end = ByteSearch.first(of: [10, 10], in: client.buffer, from: from) {
                            let event = client.buffer[from..<end]
                            if let version = FanoutBenchmark.number(after: patchKey, in: event) ?? FanoutBenchmark.number(after: versionKey, in: event) {
                                saw(version, client, received)
                            }
                            from = end + 2
                        }
                        client.buffer.removeFirst(from)
                    } else {
                        // One Content-Length framed response at a time (one request in flight).
                        guard let headEnd = ByteSearch.first(of: [13, 10, 13, 10], in: client.buffer) else { continue }
                        let head = String(decoding: client.buffer[..<headEnd], as: UTF8.self)
                        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
                        guard client.buffer.count >= headEnd + 4 + length else { continue }
                        if head.hasPrefix("HTTP/1.1 200") {
                            client.etag = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("etag:") }
                                .map { String($0.dropFirst(5)).trimmingCharacters(in: .whitespaces) }
                            if let version = FanoutBenchmark.number(after: versionKey, in: client.buffer[(headEnd + 4)...]) { saw(version, client, received) }
                        }
                        client.buffer.removeFirst(headEnd + 4 + length)
                        client.waiting = false
                    }
                    if n < scratch.count { break }
                }
            }
        }
        let after = simulator.totals.withLock { $0 }
        result.upstreamRequests = after.requests - before.requests
        result.upstreamBytes = after.bytes - before.bytes
        return result
    }

    static func percentile(_ values: [UInt64], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1_000_000
    }

    static func report(direct: Measurement, push: Measurement, clients: Int, seconds: Int, interval: Int) {
        func f(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
        func ratio(_ a: Int, _ b: Int) -> String { b == 0 ? "-" : f(Double(a) / Double(b), 4) }
        func row(_ name: String, _ m: Measurement) -> String {
            "| \(name) | \(m.upstreamRequests) | \(f(Double(m.upstreamBytes) / 1_048_576, 2)) | \(f(Double(m.clientBytes) / 1_048_576, 2)) | \(m.updates) | \(f(percentile(m.latencies, 0.5))) | \(f(percentile(m.latencies, 0.99))) | \(m.overheads.isEmpty ? "-" : f(percentile(m.overheads, 0.5), 2)) | \(m.overheads.isEmpty ? "-" : f(percentile(m.overheads, 0.99), 2)) |"
        }
        print("""
            deltacast bench upstream: \(clients) clients, \(seconds) s, /api/prices (3 of 20 rows change each second), interval \(interval) ms
            | mode | upstream requests | upstream MiB | client MiB | updates seen | change→client p50 ms | p99 ms | proxy overhead p50 ms | p99 ms |
            |---|---:|---:|---:|---:|---:|---:|---:|---:|
            \(row("direct polling", direct))
            \(row("push via proxy (SSE)", push))
            push / direct: upstream requests \(ratio(push.upstreamRequests, direct.upstreamRequests)), upstream bytes \(ratio(push.upstreamBytes, direct.upstreamBytes)), client bytes \(ratio(push.clientBytes, direct.clientBytes))
            """)
        print(#"{"bench":"upstream","clients":\#(clients),"seconds":\#(seconds),"interval_ms":\#(interval),"direct":{"upstream_requests":\#(direct.upstreamRequests),"upstream_bytes":\#(direct.upstreamBytes),"client_bytes":\#(direct.clientBytes),"updates":\#(direct.updates),"p50_ms":\#(f(percentile(direct.latencies, 0.5), 2)),"p99_ms":\#(f(percentile(direct.latencies, 0.99), 2))},"push":{"upstream_requests":\#(push.upstreamRequests),"upstream_bytes":\#(push.upstreamBytes),"client_bytes":\#(push.clientBytes),"updates":\#(push.updates),"p50_ms":\#(f(percentile(push.latencies, 0.5), 2)),"p99_ms":\#(f(percentile(push.latencies, 0.99), 2)),"overhead_p50_ms":\#(f(percentile(push.overheads, 0.5), 3)),"overhead_p99_ms":\#(f(percentile(push.overheads, 0.99), 3))}}"#)
    }
}
