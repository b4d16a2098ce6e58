import CSystemLinux
import DeltacastLoop
import DeltacastWire
import Foundation

/// `deltacast bench fanout`: N subscribers of one topic (WebSocket or SSE) on a `deltacast
/// serve` started here (pinned to CPU 0 when this runs pinned to CPU 1), M publishes at a fixed
/// rate through `POST /deltacast/publish`, and for every delivery the latency from publish to
/// receipt. Reports expected/received/lost/duplicated/reordered, latency p50/p90/p99/max,
/// delivered messages/s, event size, and the server's CPU seconds and RSS.
///
/// The subscribers live on one epoll loop in this process; each publish carries its sequence
/// number and its send time (CLOCK_MONOTONIC, shared by both processes), read back from the
/// event bytes without parsing the JSON.
enum FanoutBenchmark {
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--transport", "--subscribers", "--messages", "--rate", "--diff"])
        let transport = args.value("--transport") ?? "ws"
        guard ["ws", "sse"].contains(transport) else { throw .init(message: "--transport ws or sse") }
        let subscribers = Int(args.value("--subscribers") ?? "1000") ?? 0
        let messages = Int(args.value("--messages") ?? "100") ?? 0
        let rate = Int(args.value("--rate") ?? "10") ?? 0
        let diff = args.value("--diff") ?? "json-patch"
        guard (1...19_000).contains(subscribers), (1...100_000).contains(messages), (1...100_000).contains(rate),
              ["json-patch", "snapshot"].contains(diff) else {
            throw .init(message: "--subscribers 1...19000, --messages 1...100000, --rate 1...100000 per second, --diff json-patch|snapshot")
        }
        raiseOpenFileLimit()
        do {
            let result = try measure(transport: transport, subscribers: subscribers, messages: messages, rate: rate, diff: diff)
            print(result.table)
            print(result.json)
            return result.lost == 0 ? .success : .failure
        } catch {
            printError("deltacast bench fanout: \(error)")
            return .failure
        }
    }

    struct Result {
        var table: String
        var json: String
        var lost: Int
    }

    /// One subscriber's receive state.
    final class Subscriber {
        let fd: Int32
        var decoder: WebSocketFrameDecoder?
        var sse: [UInt8] = []
        var nextSeq = 1
        init(fd: Int32, decoder: WebSocketFrameDecoder?) { self.fd = fd; self.decoder = decoder }
    }

    static func measure(transport: String, subscribers count: Int, messages: Int, rate: Int, diff: String) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bench-fanout-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = 18_190
        let token = "bench-admin-token-0123456789"
        try """
            listen: 127.0.0.1:\(port)
            endpoints:
              - path: /bench/{room}
                source: publish
                diff: \(diff)
            admin: { token: \(token) }
            server: { event_loops: 1, idle_timeout: 10m, header_timeout: 10m }
            limits: { max_connections: 20000, max_connections_per_ip: 20000 }
            """.write(to: directory.appendingPathComponent("deltacast.yaml"), atomically: true, encoding: .utf8)
        let pinned = FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
        let server = try HTTPBenchmark.launch(pinned ? "/usr/bin/taskset" : CommandLine.arguments[0],
                                              (pinned ? ["-c", "0", CommandLine.arguments[0]] : []) + ["serve", "-c", directory.appendingPathComponent("deltacast.yaml").path])
        defer { server.terminate(); server.waitUntilExit() }
        try HTTPBenchmark.waitUntilListening(port: port)
        let pid = server.processIdentifier
        let publisher = try Socket.connect(port: port)
        defer { close(publisher) }
        let topic = "/bench/fanout"
        var eventBytes = 0
        let publish: @Sendable (Int) throws -> Void = { seq in try publishOne(fd: publisher, seq: seq, topic: topic, token: token) }
        try publish(0)

        // Connect and subscribe everyone (blocking; each confirms with its snapshot).
        let rssIdleBefore = HTTPBenchmark.rssBytes(pid)
        var subscribers: [Subscriber] = []
        subscribers.reserveCapacity(count)
        var failed = 0
        for _ in 0..<count {
            guard let fd = try? Socket.connect(port: port, receiveTimeoutSeconds: 10) else { failed += 1; continue }
            let request = transport == "ws"
                ? "GET \(topic) HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                : "GET \(topic) HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n"
            try sendAll(fd, Array(request.utf8))
            // Read the head and the snapshot (the first event) so the subscription is confirmed.
            var data: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 8192)
            let marker: [UInt8] = transport == "ws" ? Array(#""type":"snapshot""#.utf8) : Array("event: snapshot".utf8)
            var confirmed = false
            while !confirmed {
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { break }
                data += chunk[0..<n]
                if let at = find(data, marker) {
                    let end = transport == "ws" ? nil : find(data, [10, 10], from: at)
                    confirmed = transport == "ws" || end != nil
                }
            }
            guard confirmed else { close(fd); failed += 1; continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            subscribers.append(Subscriber(fd: fd, decoder: transport == "ws" ? WebSocketFrameDecoder(role: .client, maximumMessage: 1 << 20) : nil))
        }
        let rssIdle = HTTPBenchmark.rssBytes(pid)

        // Receive on one epoll loop while a thread publishes at the given rate.
        let epoll = epoll_create1(0)
        defer { close(epoll) }
        for (index, subscriber) in subscribers.enumerated() {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = UInt64(index)
            epoll_ctl(epoll, EPOLL_CTL_ADD, subscriber.fd, &event)
        }
        let cpuBefore = HTTPBenchmark.cpuSeconds(pid)
        let ownCPUBefore = ownCPUSeconds()
        let publishFailure = LockedBox<String?>(nil)
        let started = monotonicNanoseconds()
        let publishing = Thread {
            for seq in 1...messages {
                let due = started + UInt64(seq - 1) * 1_000_000_000 / UInt64(rate)
                let now = monotonicNanoseconds()
                if due > now { usleep(UInt32((due - now) / 1000)) }
                do { try publish(seq) } catch { publishFailure.value = "\(error)"; return }
            }
        }
        publishing.start()
        var latencies: [UInt64] = []
        latencies.reserveCapacity(subscribers.count * messages)
        var duplicated = 0, reordered = 0, lastReceipt = started
        let expected = subscribers.count * messages
        var events = [epoll_event](repeating: epoll_event(), count: 512)
        var scratch = [UInt8](repeating: 0, count: 256 * 1024)
        let deadline = started + UInt64(messages) * 1_000_000_000 / UInt64(rate) + 30_000_000_000
        func record(_ payload: some Collection<UInt8>, _ subscriber: Subscriber, _ now: UInt64) {
            guard let seq = number(after: Array(#""seq":"#.utf8), in: payload) ?? number(after: Array(#""/seq","value":"#.utf8), in: payload),
                  let sent = number(after: Array(#""sent":"#.utf8), in: payload) ?? number(after: Array(#""/sent","value":"#.utf8), in: payload) else { return }
            if seq < subscriber.nextSeq { duplicated += 1; return }
            if seq > subscriber.nextSeq { reordered += 1 }
            subscriber.nextSeq = seq + 1
            if eventBytes == 0 { eventBytes = payload.count }
            latencies.append(now > UInt64(sent) ? now - UInt64(sent) : 0)
            lastReceipt = now
        }
        while latencies.count + duplicated < expected && monotonicNanoseconds() < deadline && publishFailure.value == nil {
            let ready = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, Int32($0.count), 200) }
            guard ready > 0 else { continue }
            for index in 0..<Int(ready) {
                let subscriber = subscribers[Int(events[index].data.u64)]
                while true {
                    let n = scratch.withUnsafeMutableBytes { read(subscriber.fd, $0.baseAddress, $0.count) }
                    guard n > 0 else { break }
                    let now = monotonicNanoseconds()
                    if var decoder = subscriber.decoder {
                        decoder.append(scratch[0..<n])
                        while case .message(_, let payload)?? = try? decoder.next() { record(payload, subscriber, now) }
                        subscriber.decoder = decoder
                    } else {
                        subscriber.sse += scratch[0..<n]
                        var start = 0
                        while let end = find(subscriber.sse, [10, 10], from: start) {
                            record(subscriber.sse[start..<end], subscriber, now)
                            start = end + 2
                        }
                        subscriber.sse.removeFirst(start)
                    }
                    if n < scratch.count { break }
                }
            }
        }
        while !publishing.isFinished { usleep(1000) }
        if let failure = publishFailure.value { throw HTTPBenchmark.Failure(description: failure) }
        let cpu = HTTPBenchmark.cpuSeconds(pid) - cpuBefore
        let ownCPU = ownCPUSeconds() - ownCPUBefore
        let rssAfter = HTTPBenchmark.rssBytes(pid)
        for subscriber in subscribers { close(subscriber.fd) }

        latencies.sort()
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            return Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1_000_000
        }
        let received = latencies.count
        let seconds = Double(lastReceipt - started) / 1e9
        let perSecond = seconds > 0 ? Double(received) / seconds : 0
        let lost = expected - received
        func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
        let table = """
            deltacast bench fanout: \(transport), \(subscribers.count) subscribers (\(failed) failed), \(messages) messages at \(rate)/s, diff \(diff), event \(eventBytes) B
            | expected | received | lost | duplicated | reordered | p50 ms | p90 ms | p99 ms | max ms | delivered/s | server CPU s | server RSS idle→after MiB | bench CPU s |
            |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
            | \(expected) | \(received) | \(lost) | \(duplicated) | \(reordered) | \(f(percentile(0.5))) | \(f(percentile(0.9))) | \(f(percentile(0.99))) | \(f(percentile(1))) | \(f(perSecond, 0)) | \(f(cpu)) | \(f(rssIdle / 1_048_576, 1))→\(f(rssAfter / 1_048_576, 1)) (before subscribers \(f(rssIdleBefore / 1_048_576, 1))) | \(f(ownCPU)) |
            """
        let json = #"{"bench":"fanout","transport":"\#(transport)","diff":"\#(diff)","subscribers":\#(subscribers.count),"failed":\#(failed),"messages":\#(messages),"rate":\#(rate),"event_bytes":\#(eventBytes),"expected":\#(expected),"received":\#(received),"lost":\#(lost),"duplicated":\#(duplicated),"reordered":\#(reordered),"p50_ms":\#(f(percentile(0.5), 3)),"p90_ms":\#(f(percentile(0.9), 3)),"p99_ms":\#(f(percentile(0.99), 3)),"max_ms":\#(f(percentile(1), 3)),"delivered_per_s":\#(f(perSecond, 0)),"server_cpu_s":\#(f(cpu, 3)),"server_rss_idle":\#(Int(rssIdle)),"server_rss_after":\#(Int(rssAfter)),"bench_cpu_s":\#(f(ownCPU, 3))}"#
        return Result(table: table, json: json, lost: lost)
    }

    /// The document: ~200-byte events in either mode (a 48-character message changes each time: the patch is about 200 bytes).
    static func document(_ seq: Int) -> String {
        let message = String(repeating: Array("abcdefgh")[seq % 8], count: 48)
        return #"{"seq":\#(seq),"sent":\#(monotonicNanoseconds()),"message":"\#(message)","unit":"bench","fixed":"\#(String(repeating: "f", count: 160))"}"#
    }

    /// One publish on the keep-alive connection `fd`; waits for its 200.
    static func publishOne(fd: Int32, seq: Int, topic: String, token: String) throws {
        try publish(fd: fd, body: document(seq), topic: topic, token: token)
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

    static func find(_ bytes: [UInt8], _ pattern: [UInt8], from start: Int = 0) -> Int? {
        guard bytes.count >= pattern.count + start else { return nil }
        var index = start
        while index <= bytes.count - pattern.count {
            if bytes[index] == pattern[0] && bytes[index..<(index + pattern.count)].elementsEqual(pattern) { return index }
            index += 1
        }
        return nil
    }

    /// The decimal number right after `key` in `bytes` (no JSON parse on the receive path).
    static func number(after key: [UInt8], in bytes: some Collection<UInt8>) -> Int? {
        let array = Array(bytes)
        guard let at = find(array, key) else { return nil }
        var value = 0, index = at + key.count, digits = 0
        while index < array.count, array[index] >= 0x30, array[index] <= 0x39 {
            value = value * 10 + Int(array[index] - 0x30)
            index += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

/// A value shared between the publishing thread and the receive loop.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

/// Takes the whole hard limit of open files (20,000 here): each connection is a descriptor.
func raiseOpenFileLimit() {
    var limit = rlimit()
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    if getrlimit(resource, &limit) == 0 && limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(resource, &limit)
    }
}
