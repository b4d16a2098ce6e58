import CSystemLinux
import DeltacastBase
import DeltacastClient
import DeltacastLoop
import DeltacastServer
import DeltacastTLS
import DeltacastWire
import Foundation
import Synchronization

/// The load generator behind `deltacast bench fanout|throughput|connections`: N subscribers of
/// one channel on any server (Deltacast, Nchan, Pushpin: the subscribe URL, the publish URL,
/// publish headers and a body template are arguments), all on one epoll loop in this thread,
/// with the publisher on the same loop (one keep-alive connection, one publish in flight).
///
/// Every message is `{"seq":S,"sent":T,"pad":"..."}` padded to `--size` bytes, where T is the
/// publisher's CLOCK_MONOTONIC in nanoseconds (shared by every process on the machine); the
/// receive path finds `"seq":` and `"sent":` (or Deltacast's `"/seq","value":` patch form) in
/// the bytes as they sit in the connection's buffer: no parse and no allocation per message.
/// WebSocket frames from the server are read in place (unmasked, unfragmented text frames;
/// pings are answered).
///
/// Phases, each with a time limit: connect (and handshake) every subscriber; confirm each by a
/// warm-up message (seq 0) it must receive; then `fanout` publishes M messages at R per second,
/// `throughput` publishes as fast as delivery allows with at most W messages not yet received by
/// everyone, `connections` publishes nothing and measures the server's memory per connection.
final class LoadGenerator {
    enum Mode: String { case fanout, throughput, connections }

    struct Endpoint {
        var host: String
        var port: Int
        var target: String
        /// `https://` or `wss://`: TLS (the certificate is not verified: loopback benchmarks).
        var tls: Bool

        /// `http://host:port/path?query` (or `ws://`).
        init?(_ url: String) {
            guard let scheme = url.range(of: "://") else { return nil }
            tls = url.hasPrefix("https://") || url.hasPrefix("wss://")
            let rest = url[scheme.upperBound...]
            let authority = rest.prefix { $0 != "/" }
            target = rest.count > authority.count ? String(rest.dropFirst(authority.count)) : "/"
            guard let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]) else { return nil }
            host = String(authority[..<colon])
            self.port = port
        }
    }

    struct Options {
        var mode = Mode.fanout
        var transport = "ws"
        var pollStyle = "deltacast"
        var subscribers = 1000
        var messages = 100
        var rate = 10
        var window = 8
        var size = 200
        var subscribe: Endpoint
        /// Every subscribe URL (`--subscribe` given several times: subscribers go round them,
        /// e.g. the nodes of a cluster); `subscribe` is the first.
        var subscribeAll: [Endpoint] = []
        var publish: Endpoint?
        var publishHeaders: [String] = []
        var bodyTemplate = "{message}"
        var pids: [Int32] = []
        var sources = 1
        var label = "deltacast"
        /// New connections per second (0: as fast as possible).
        var connectRate = 0
        /// Publish requests pipelined on the publisher's connection.
        var pipeline = 1
        /// Fan-out: messages published at the same rate before the measured ones, delivered
        /// and checked but not measured. A new TCP connection acknowledges its first 16 or so
        /// segments at once (quick-ack mode), and on loopback the sender's core does that
        /// work: the first fan-outs cost every server about a third more than the steady
        /// state that long-lived dashboards live in.
        var settle = 0
        /// Milliseconds between `GET /metrics` scrapes of the subscribe host during the
        /// measured phase (0: none), from a thread of its own.
        var scrapeMilliseconds = 0
        var phaseSeconds = 60
    }

    final class Subscriber {
        let fd: Int32
        /// The TLS session (`https://`/`wss://` subscribe URLs).
        var tls: TLSStream?
        var buffer: [UInt8] = []
        var handshaken = false
        /// Which subscribe URL it uses (an index into `subscribeAll`).
        var endpoint = 0
        var nextSeq = 0
        var confirmed = false
        var failed = false
        /// A large message (`bench coldstart`) is stamped from its first bytes, the rest is dropped
        /// as it arrives, and it is recorded at its last byte: 1 MB for each of 10,000 subscribers would otherwise sit here.
        /// WebSocket: bytes left of the current frame; SSE: drop until the blank line.
        var discarding = 0
        var discardingEvent = false
        var lastByte: UInt8 = 0
        /// The large message being dropped, recorded when its last byte arrives.
        var stamp: (seq: Int, sent: Int, size: Int)?
        // Long-poll state.
        var cursor = ""
        var lastModified = ""
        var etag = ""
        init(fd: Int32) {
            self.fd = fd
            buffer.reserveCapacity(4096)
        }
    }

    let options: Options
    var subscribers: [Subscriber] = []
    var histogram = Histogram()
    var received = 0, duplicated = 0, reordered = 0, connectFailures = 0
    var counts: [Int32] = []
    var completedPrefix = 0
    var published = 0
    /// Publish requests sent and not yet answered (pipelined up to `options.pipeline`), kept
    /// to be sent again when a server closes the connection with some unanswered (nginx after
    /// `keepalive_requests`, Pushpin after each answer).
    var unanswered: [[UInt8]] = []
    var publishesInFlight: Int { unanswered.count }
    var publisher: Int32 = -1
    var publisherBuffer: [UInt8] = []
    var lastReceipt: UInt64 = 0
    var confirmedCount = 0
    let epoll = epoll_create1(0)
    var scratch = [UInt8](repeating: 0, count: 256 * 1024)
    var eventBytes = 0

    init(options: Options) { self.options = options }
    deinit {
        for subscriber in subscribers { close(subscriber.fd) }
        if publisher >= 0 { close(publisher) }
        close(epoll)
    }

    // MARK: Messages

    /// A fan-out's publishing schedule: message `seq` is due at
    /// `start + (seq - 1 - before) * interval`, `before` being the messages of an earlier phase.
    var schedule: (start: UInt64, interval: UInt64, before: Int)?

    /// Message `seq`, stamped with the time it was due (a fan-out's schedule) or now. A fan-out
    /// stamps the due time because a server that answers a publish only after its writes holds
    /// the next publish back when it falls behind. Stamped when sent, that delay would not
    /// count (coordinated omission), and such a server would look faster than one that answers
    /// at once and queues the backlog itself.
    func message(_ seq: Int) -> [UInt8] {
        let due = seq > 0 ? schedule.map { $0.start + UInt64(max(0, seq - 1 - $0.before)) * $0.interval } : nil
        let head = #"{"seq":\#(seq),"sent":\#(due ?? MonotonicClock.nanoseconds()),"pad":""#
        // Warm-ups of large documents stay small: they only confirm each subscriber.
        let size = seq == 0 && options.size > Self.largeMessage ? 200 : options.size
        let pad = String(repeating: "x", count: max(0, size - head.utf8.count - 2))
        let text = head + pad + "\"}"
        var body = options.bodyTemplate
        if body.contains("{message_json}") || body.contains("{message_escaped}") {
            let escaped = text.replacingOccurrences(of: "\"", with: "\\\"")
            body = body.replacingOccurrences(of: "{message_json}", with: "\"" + escaped + "\"")
                .replacingOccurrences(of: "{message_escaped}", with: escaped)
        }
        body = body.replacingOccurrences(of: "{message}", with: text)
        var request = "POST \(options.publish!.target) HTTP/1.1\r\nHost: \(options.publish!.host)\r\nContent-Length: \(body.utf8.count)\r\n"
        for header in options.publishHeaders { request += header + "\r\n" }
        if !options.publishHeaders.contains(where: { $0.lowercased().hasPrefix("content-type:") }) { request += "Content-Type: application/json\r\n" }
        return Array((request + "\r\n" + body).utf8)
    }

    /// Past this size (bytes) a message is a large document (`bench coldstart`).
    static let largeMessage = 65_536

    // MARK: Connecting

    func connect(index: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        if options.sources > 1 {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            inet_pton(AF_INET, "127.0.0.\(1 + index % options.sources)", &local.sin_addr)
            _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        let target = endpoint(index)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(target.port).bigEndian
        inet_pton(AF_INET, target.host == "localhost" ? "127.0.0.1" : target.host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard result == 0 else { close(fd); return nil }
        return fd
    }

    /// Sends the subscribe request (through TLS when the URL says so) while the socket still
    /// blocks, then makes it non-blocking for the measured loop.
    func open(_ subscriber: Subscriber) throws {
        let request = subscribeRequest(subscriber)
        if options.subscribe.tls {
            guard let tls = TLSStream.benchmarkClient(fd: subscriber.fd) else { throw HTTPBenchmark.Failure(description: "TLS handshake failed") }
            subscriber.tls = tls
            var offset = 0
            while offset < request.count {
                let n = request[offset...].withUnsafeBytes { tls.write($0) }
                guard n > 0 else { throw HTTPBenchmark.Failure(description: "TLS write failed") }
                offset += n
            }
        } else {
            try FanoutBenchmark.sendAll(subscriber.fd, request)
        }
        _ = fcntl(subscriber.fd, F_SETFL, fcntl(subscriber.fd, F_GETFL) | O_NONBLOCK)
    }

    /// The subscribe request: a WebSocket upgrade (no subprotocol, so Nchan and Pushpin accept
    /// it too), an event stream, or the next long-poll (Nchan's caching headers, or our cursor).
    func subscribeRequest(_ subscriber: Subscriber) -> [UInt8] {
        let url = endpoint(subscriber.endpoint)
        let host = "\(url.host):\(url.port)"
        let target = url.target
        switch options.transport {
        case "ws":
            return PushRequest.webSocketUpgrade(target: target, host: host, key: PushRequest.webSocketKey(), subprotocols: [])
        case "sse":
            return PushRequest.eventStream(target: target, host: host)
        default:
            if options.pollStyle == "nchan" {
                let headers = subscriber.lastModified.isEmpty ? [] : ["If-Modified-Since: \(subscriber.lastModified)", "If-None-Match: \(subscriber.etag)"]
                return PushRequest.get(target: target, host: host, headers: headers)
            }
            let separator = target.contains("?") ? "&" : "?"
            return PushRequest.get(target: "\(target)\(separator)since=\(subscriber.cursor)&wait=30", host: host)
        }
    }

    /// The subscribe URL of subscriber `index` (round robin over `subscribeAll`).
    func endpoint(_ index: Int) -> Endpoint {
        options.subscribeAll.isEmpty ? options.subscribe : options.subscribeAll[index % options.subscribeAll.count]
    }

    /// Edge-triggered: every read loop below runs until a short read (or, through TLS, until
    /// the read would block), and new bytes raise a new edge. Level-triggered, `epoll_wait`
    /// would poll each socket it returned once more the next time round; when the generator
    /// falls behind, those sockets are cold by then, and the extra cache misses put it further
    /// behind, a feedback that measured the generator instead of the server at 15,000 subscribers.
    func watch(_ fd: Int32, tag: UInt64) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLET.rawValue
        event.data.u64 = tag
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
    }

    // MARK: The loop

    /// Runs the loop until `done()` or `deadline`; publishes as `publishDue()` allows.
    func run(until deadline: UInt64, done: () -> Bool, publishDue: () -> Bool) throws {
        var events = [epoll_event](repeating: epoll_event(), count: 1024)
        while !done() {
            let now = MonotonicClock.nanoseconds()
            if now >= deadline { return }
            while publishesInFlight < (warmingUp ? 1 : options.pipeline) && publisher >= 0 && publishDue() { try publishNext() }
            let timeout = Int32(options.mode == .fanout ? 1 : 20)
            let ready = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, Int32($0.count), timeout) }
            guard ready > 0 else { continue }
            for index in 0..<Int(ready) {
                let tag = events[index].data.u64
                if tag == UInt64.max { try publisherReadable() } else { readable(subscribers[Int(tag)]) }
            }
        }
    }

    var warmingUp = false
    var lastWarmUp: UInt64 = 0

    func publishNext() throws {
        if warmingUp {
            // The warm-up (seq 0) is repeated until every subscriber has one: some servers
            // finish a subscription after its handshake (Pushpin asks its origin first).
            lastWarmUp = MonotonicClock.nanoseconds()
            published = 1
            let bytes = message(0)
            unanswered.append(bytes)
            try FanoutBenchmark.sendAll(publisher, bytes)
            return
        }
        let bytes = message(published)
        published += 1
        unanswered.append(bytes)
        try FanoutBenchmark.sendAll(publisher, bytes)
    }

    /// Connects (or reconnects: some publish endpoints close after each answer) the publisher.
    func connectPublisher() throws {
        if publisher >= 0 { epoll_ctl(epoll, EPOLL_CTL_DEL, publisher, nil); close(publisher) }
        guard let publish = options.publish, let fd = try? Socket.connect(host: publish.host, port: publish.port) else {
            throw HTTPBenchmark.Failure(description: "cannot connect to the publish URL")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        publisher = fd
        publisherBuffer.removeAll(keepingCapacity: true)
        watch(fd, tag: UInt64.max)
    }

    func publisherReadable() throws {
        while true {
            let n = scratch.withUnsafeMutableBytes { read(publisher, $0.baseAddress, $0.count) }
            if n > 0 { publisherBuffer += scratch[0..<n]; continue }
            if n == 0 {
                // Closed. A close-delimited answer ends here; publishes the server did not
                // answer go again on a new connection.
                if !unanswered.isEmpty, !publisherBuffer.isEmpty {
                    guard publisherBuffer.starts(with: Array("HTTP/1.1 2".utf8)) || publisherBuffer.starts(with: Array("HTTP/1.0 2".utf8)) else {
                        throw HTTPBenchmark.Failure(description: "publish refused: \(String(decoding: publisherBuffer, as: UTF8.self))")
                    }
                    unanswered.removeFirst()
                }
                try connectPublisher()
                for request in unanswered { try FanoutBenchmark.sendAll(publisher, request) }
                return
            }
            break
        }
        // One response at a time: Content-Length or chunked framing.
        while let headEnd = ByteSearch.first(of: [13, 10, 13, 10], in: publisherBuffer) {
            let head = String(decoding: publisherBuffer[..<headEnd], as: UTF8.self)
            guard head.hasPrefix("HTTP/1.1 2") || head.hasPrefix("HTTP/1.0 2") else { throw HTTPBenchmark.Failure(description: "publish refused: \(head)") }
            var total: Int
            if let line = head.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") }) {
                total = headEnd + 4 + (Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) ?? 0)
            } else if head.lowercased().contains("transfer-encoding: chunked") {
                guard let end = ByteSearch.first(of: Array("0\r\n\r\n".utf8), in: publisherBuffer, from: headEnd + 4) else { return }
                total = end + 5
            } else if head.lowercased().contains("connection: close") || head.hasPrefix("HTTP/1.0") {
                return  // close-delimited: complete at EOF
            } else {
                total = headEnd + 4
            }
            guard publisherBuffer.count >= total else { return }
            publisherBuffer.removeFirst(total)
            if !unanswered.isEmpty { unanswered.removeFirst() }
        }
    }

    func readable(_ subscriber: Subscriber) {
        while true {
            if let tls = subscriber.tls {
                // A record may hold more than one read returns: read until it would block.
                let n = scratch.withUnsafeMutableBytes { tls.read(into: $0) }
                if n == -1 { return }
                if n <= 0 {
                    if !subscriber.failed { subscriber.failed = true; epoll_ctl(epoll, EPOLL_CTL_DEL, subscriber.fd, nil) }
                    return
                }
                take(subscriber, scratch[0..<n])
                process(subscriber, now: MonotonicClock.nanoseconds())
                continue
            }
            let n = scratch.withUnsafeMutableBytes { read(subscriber.fd, $0.baseAddress, $0.count) }
            if n == 0 || (n < 0 && errno != EAGAIN) {
                if !subscriber.failed { subscriber.failed = true; epoll_ctl(epoll, EPOLL_CTL_DEL, subscriber.fd, nil) }
                return
            }
            guard n > 0 else { return }
            if subscriber.buffer.isEmpty && subscriber.handshaken && subscriber.discarding == 0 && !subscriber.discardingEvent && options.transport != "poll" {
                // The usual case: whole messages, recorded from the read buffer itself; only
                // a partial one at the end is kept.
                let consumed = scratch.withUnsafeBufferPointer { consume(UnsafeBufferPointer(rebasing: $0[0..<n]), subscriber, now: MonotonicClock.nanoseconds()) }
                if consumed < n { subscriber.buffer.append(contentsOf: scratch[consumed..<n]) }
            } else {
                take(subscriber, scratch[0..<n])
                process(subscriber, now: MonotonicClock.nanoseconds())
            }
            if n < scratch.count { return }
        }
    }

    /// Buffers what arrived, less what belongs to a large message already recorded.
    func take(_ subscriber: Subscriber, _ chunk: ArraySlice<UInt8>) {
        var chunk = chunk
        if subscriber.discarding > 0 {
            let drop = min(subscriber.discarding, chunk.count)
            subscriber.discarding -= drop
            chunk = chunk.dropFirst(drop)
            if subscriber.discarding == 0 { completeLarge(subscriber) }
        } else if subscriber.discardingEvent {
            guard let end = Self.blankLine(in: chunk, after: subscriber.lastByte) else {
                subscriber.lastByte = chunk.last ?? subscriber.lastByte
                return
            }
            subscriber.discardingEvent = false
            chunk = chunk[(end + 1)...]
            completeLarge(subscriber)
        }
        subscriber.buffer.append(contentsOf: chunk)
    }

    /// A large message's last byte arrived: it counts now (time to the last byte).
    func completeLarge(_ subscriber: Subscriber) {
        guard let stamp = subscriber.stamp else { return }
        subscriber.stamp = nil
        record(seq: stamp.seq, sent: stamp.sent, size: stamp.size, subscriber, MonotonicClock.nanoseconds())
    }

    /// The index of the second LF of the first "\n\n" in `chunk` (`previous`: the byte before it).
    static func blankLine(in chunk: ArraySlice<UInt8>, after previous: UInt8) -> Int? {
        chunk.withUnsafeBytes { raw -> Int? in
            guard let base = raw.baseAddress else { return nil }
            var offset = 0
            while offset < raw.count, let hit = memchr(base + offset, 10, raw.count - offset) {
                let at = base.distance(to: UnsafeRawPointer(hit))
                if (at == 0 && previous == 10) || (at > 0 && raw[at - 1] == 10) { return chunk.startIndex + at }
                offset = at + 1
            }
            return nil
        }
    }

    func process(_ subscriber: Subscriber, now: UInt64) {
        if !subscriber.handshaken && options.transport != "poll" {
            guard let end = ByteSearch.first(of: [13, 10, 13, 10], in: subscriber.buffer) else { return }
            let ok = subscriber.buffer.starts(with: Array(options.transport == "ws" ? "HTTP/1.1 101".utf8 : "HTTP/1.1 200".utf8))
            if !ok { subscriber.failed = true; return }
            subscriber.handshaken = true
            subscriber.buffer.removeFirst(end + 4)
        }
        let consumed = subscriber.buffer.withUnsafeBufferPointer { consume($0, subscriber, now: now) }
        if consumed > 0 {
            subscriber.buffer.removeFirst(consumed)
            if options.transport == "poll" { try? FanoutBenchmark.sendAll(subscriber.fd, subscribeRequest(subscriber)) }
        }
    }

    /// Records every complete message at the start of `bytes`; returns how many bytes that used.
    func consume(_ bytes: UnsafeBufferPointer<UInt8>, _ subscriber: Subscriber, now: UInt64) -> Int {
        var consumed = 0
        switch options.transport {
        case "ws":
            while bytes.count - consumed >= 2 {
                let opcode = bytes[consumed] & 0x0F
                var length = Int(bytes[consumed + 1] & 0x7F), header = 2
                if length == 126 {
                    guard bytes.count - consumed >= 4 else { return consumed }
                    length = Int(bytes[consumed + 2]) << 8 | Int(bytes[consumed + 3]); header = 4
                } else if length == 127 {
                    guard bytes.count - consumed >= 10 else { return consumed }
                    length = (0..<8).reduce(0) { $0 << 8 | Int(bytes[consumed + 2 + $1]) }; header = 10
                }
                if length > Self.largeMessage, bytes.count - consumed < header + length {
                    // Stamped from its first bytes; the rest is dropped as it arrives, and
                    // it is recorded at its last byte.
                    guard bytes.count - consumed >= header + 256 else { return consumed }
                    subscriber.stamp = Self.stamp(bytes, (consumed + header)..<bytes.count).map { ($0.seq, $0.sent, length) }
                    subscriber.discarding = header + length - (bytes.count - consumed)
                    consumed = bytes.count
                    return consumed
                }
                guard bytes.count - consumed >= header + length else { return consumed }
                let payload = (consumed + header)..<(consumed + header + length)
                if opcode == 0x9 {
                    let pong = WebSocketFrame.encode(.pong, payload: Array(bytes[payload]), maskKey: [1, 2, 3, 4])
                    try? FanoutBenchmark.sendAll(subscriber.fd, pong)
                } else if opcode == 0x1 || opcode == 0x2 {
                    record(bytes, payload, subscriber, now)
                }
                consumed = payload.upperBound
            }
        case "sse":
            while let end = ByteSearch.first(of: [10, 10], in: bytes, from: consumed) {
                record(bytes, consumed..<end, subscriber, now)
                consumed = end + 2
            }
            if bytes.count - consumed > Self.largeMessage {
                // A large event: stamped from its first bytes, the rest dropped as it
                // arrives, recorded at its end.
                subscriber.stamp = Self.stamp(bytes, consumed..<bytes.count).map { ($0.seq, $0.sent, options.size) }
                subscriber.discardingEvent = true
                subscriber.lastByte = bytes[bytes.count - 1]
                consumed = bytes.count
            }
        default:
            guard let headEnd = ByteSearch.first(of: [13, 10, 13, 10], in: bytes, from: 0) else { return consumed }
            let head = String(decoding: UnsafeBufferPointer(rebasing: bytes[0..<headEnd]), as: UTF8.self)
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
            guard bytes.count >= headEnd + 4 + length else { return consumed }
            let body = (headEnd + 4)..<(headEnd + 4 + length)
            if head.hasPrefix("HTTP/1.1 200") {
                // A long-poll answer may carry several messages: record each `"seq":`.
                var from = body.lowerBound
                while let at = ByteSearch.first(of: Keys.seq, in: bytes, from: from), at < body.upperBound {
                    let next = ByteSearch.first(of: Keys.seq, in: bytes, from: at + 6).map { min($0, body.upperBound) } ?? body.upperBound
                    record(bytes, at..<next, subscriber, now)
                    from = next
                }
                if options.pollStyle == "nchan" {
                    for line in head.split(separator: "\r\n") {
                        if line.lowercased().hasPrefix("last-modified:") { subscriber.lastModified = line.dropFirst(14).trimmingCharacters(in: .whitespaces) }
                        if line.lowercased().hasPrefix("etag:") { subscriber.etag = line.dropFirst(5).trimmingCharacters(in: .whitespaces) }
                    }
                } else if let at = Self.lastFind(bytes, Array(#""cursor":""#.utf8), in: body) {
                    let start = at + 10
                    var end = start
                    while end < body.upperBound && bytes[end] != 0x22 { end += 1 }
                    subscriber.cursor = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
                }
            }
            consumed = headEnd + 4 + length
        }
        return consumed
    }

    func record(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ subscriber: Subscriber, _ now: UInt64) {
        guard let (seq, sent) = Self.stamp(bytes, range) else { return }
        record(seq: seq, sent: sent, size: range.count, subscriber, now)
    }

    /// What a message's stamp is found by, made once: the receive path runs per delivery.
    enum Keys {
        static let seq = Array(#""seq":"#.utf8)
        static let sent = Array(#""sent":"#.utf8)
        static let patchedSeq = Array(#""/seq","value":"#.utf8)
        static let patchedSent = Array(#""/sent","value":"#.utf8)
    }

    /// A message's `seq` and `sent` (or a patch's values for them).
    static func stamp(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> (seq: Int, sent: Int)? {
        guard let seq = number(bytes, Keys.seq, range) ?? number(bytes, Keys.patchedSeq, range),
              let sent = number(bytes, Keys.sent, range) ?? number(bytes, Keys.patchedSent, range) else { return nil }
        return (seq, sent)
    }

    func record(seq: Int, sent: Int, size: Int, _ subscriber: Subscriber, _ now: UInt64) {
        if !subscriber.confirmed { subscriber.confirmed = true; confirmedCount += 1 }
        if seq == 0 && subscriber.nextSeq > 0 { return }  // a repeated warm-up
        if seq < subscriber.nextSeq { duplicated += 1; return }
        if seq > subscriber.nextSeq && subscriber.nextSeq > 0 { reordered += 1 }
        subscriber.nextSeq = seq + 1
        guard seq > 0 else { return }  // the warm-up message confirms, it is not measured
        if eventBytes == 0 { eventBytes = size }
        received += 1
        lastReceipt = now
        histogram.record(now > UInt64(sent) ? (now - UInt64(sent)) / 1000 : 0)
        if seq < counts.count {
            counts[seq] += 1
            while completedPrefix + 1 < counts.count && counts[completedPrefix + 1] >= Int32(confirmedCount) { completedPrefix += 1 }
        }
    }

    static func lastFind(_ bytes: UnsafeBufferPointer<UInt8>, _ pattern: [UInt8], in range: Range<Int>) -> Int? {
        var found: Int?
        var from = range.lowerBound
        while let at = ByteSearch.first(of: pattern, in: bytes, from: from), at < range.upperBound { found = at; from = at + 1 }
        return found
    }

    static func number(_ bytes: UnsafeBufferPointer<UInt8>, _ key: [UInt8], _ range: Range<Int>) -> Int? {
        guard let at = ByteSearch.first(of: key, in: bytes, from: range.lowerBound), at + key.count < range.upperBound else { return nil }
        var value = 0, index = at + key.count, digits = 0
        while index < range.upperBound, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            value = value &* 10 &+ Int(bytes[index] - 0x30)
            index += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    // MARK: A whole run

    struct Report { var table: String; var json: String; var lost: Int }

    func measure() throws -> Report {
        let o = options
        let phase = UInt64(o.phaseSeconds) * 1_000_000_000
        func rss() -> Double { o.pids.map(HTTPBenchmark.rssBytes).reduce(0, +) }
        func cpu() -> Double { o.pids.map(HTTPBenchmark.cpuSeconds).reduce(0, +) }
        let rssBefore = rss()
        let connectStart = MonotonicClock.nanoseconds()
        for index in 0..<o.subscribers {
            guard let fd = connect(index: index) else { connectFailures += 1; continue }
            let subscriber = Subscriber(fd: fd)
            subscriber.endpoint = index
            watch(fd, tag: UInt64(subscribers.count))
            subscribers.append(subscriber)
            do { try open(subscriber) } catch { subscriber.failed = true }
            // Paced: every twentieth of a second's worth, let the loop take the answers.
            if o.connectRate > 0, (index + 1) % max(1, o.connectRate / 20) == 0 {
                try run(until: MonotonicClock.nanoseconds() + 50_000_000, done: { false }, publishDue: { false })
            }
        }
        if o.publish != nil { try connectPublisher() }
        // Handshakes (WebSocket 101, SSE 200), then the warm-up message confirms each subscriber.
        let handshakeDeadline = MonotonicClock.nanoseconds() + phase
        try run(until: handshakeDeadline, done: { o.transport == "poll" || subscribers.allSatisfy { $0.handshaken || $0.failed } }, publishDue: { false })
        if o.transport == "poll" { usleep(500_000) }  // long-polls are parked before the warm-up
        let settle = o.mode == .fanout ? o.settle : 0
        counts = [Int32](repeating: 0, count: o.mode == .connections ? 1 : settle + o.messages + 1)
        warmingUp = true
        try run(until: MonotonicClock.nanoseconds() + UInt64(min(o.phaseSeconds, 20)) * 1_000_000_000,
                done: { confirmedCount + subscribers.filter(\.failed).count >= subscribers.count },
                publishDue: { MonotonicClock.nanoseconds() - lastWarmUp > 250_000_000 })
        warmingUp = false
        // Let the last warm-up's answer and deliveries settle before measuring.
        try run(until: MonotonicClock.nanoseconds() + 300_000_000, done: { false }, publishDue: { false })
        let connectSeconds = Double(MonotonicClock.nanoseconds() - connectStart) / 1e9
        let confirmed = confirmedCount
        usleep(300_000)
        let rssIdle = rss()
        let interval = 1_000_000_000 / UInt64(max(1, o.rate))
        if settle > 0 {
            // Unmeasured messages at the measured rate, each to arrive everywhere (not lost, not
            // repeated); then the counts start again.
            let settleStart = MonotonicClock.nanoseconds()
            schedule = (settleStart, interval, 0)
            try run(until: settleStart + UInt64(settle) * interval + phase, done: { received >= settle * confirmed },
                    publishDue: { published <= settle && MonotonicClock.nanoseconds() >= settleStart + UInt64(max(0, published - 1)) * interval })
            schedule = nil
            guard received == settle * confirmed, duplicated == 0 else {
                throw HTTPBenchmark.Failure(description: "settling: \(received) of \(settle * confirmed) deliveries arrived, \(duplicated) repeated")
            }
            received = 0
            reordered = 0
            histogram = Histogram()
        }
        let before = published - 1
        let cpuBefore = cpu(), ownBefore = FanoutBenchmark.ownCPUSeconds()
        let start = MonotonicClock.nanoseconds()
        let scraping = Atomic<Bool>(o.scrapeMilliseconds > 0)
        let scrapes = Atomic<Int>(0)
        if o.scrapeMilliseconds > 0 {
            let host = o.subscribe.host, port = o.subscribe.port, every = UInt32(o.scrapeMilliseconds * 1000)
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while scraping.load(ordering: .relaxed) {
                    if let fd = try? Socket.connect(host: host, port: port, receiveTimeoutSeconds: 5) {
                        try? FanoutBenchmark.sendAll(fd, Array("GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".utf8))
                        while read(fd, &buffer, buffer.count) > 0 {}
                        close(fd)
                        scrapes.add(1, ordering: .relaxed)
                    }
                    usleep(every)
                }
            }
        }
        defer { scraping.store(false, ordering: .relaxed) }
        switch o.mode {
        case .connections:
            break
        case .fanout:
            schedule = (start, interval, before)
            defer { schedule = nil }
            try run(until: start + UInt64(o.messages) * interval + phase, done: { received >= o.messages * confirmed },
                    publishDue: { published - before <= o.messages && MonotonicClock.nanoseconds() >= start + UInt64(max(0, published - 1 - before)) * interval })
        case .throughput:
            try run(until: start + phase, done: { received >= o.messages * confirmed },
                    publishDue: { published <= o.messages && published - 1 - completedPrefix < o.window })
        }
        // Past the phase's limit nothing more is published; what was published must still arrive.
        let sent = max(0, published - 1 - before)
        try run(until: MonotonicClock.nanoseconds() + 10_000_000_000, done: { received >= sent * confirmed }, publishDue: { false })
        let cpuUsed = cpu() - cpuBefore, ownCPU = FanoutBenchmark.ownCPUSeconds() - ownBefore
        let rssAfter = rss()
        // The high-water mark over the whole run (VmHWM): for large documents it shows whether the
        // bytes queued to every subscriber are shared or copied.
        let rssPeak = o.pids.map(HTTPBenchmark.peakRSSBytes).reduce(0, +)
        // Every message published (all M unless the phase's time limit stopped the publisher).
        let expected = o.mode == .connections ? 0 : sent * confirmed
        let lost = expected - received
        let seconds = Double((lastReceipt > start ? lastReceipt : start) - start) / 1e9
        let perSecond = seconds > 0 ? Double(received) / seconds : 0
        let perConnection = confirmed > 0 ? (rssIdle - rssBefore) / Double(confirmed) : 0
        let cpuPerDelivery = received > 0 ? cpuUsed / Double(received) * 1e6 : 0
        func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
        let h = histogram
        let title = "deltacast bench \(o.mode.rawValue): \(o.label), \(o.transport), \(confirmed) of \(o.subscribers) subscribers confirmed (\(connectFailures) connect failures), " +
            (o.mode == .fanout ? "\(sent) of \(o.messages) messages at \(o.rate)/s" : o.mode == .throughput ? "\(sent) of \(o.messages) messages published within \(o.phaseSeconds) s, window \(o.window)" : "no messages") +
            ", \(o.size)-byte messages, event \(eventBytes) B"
        let table = """
            \(title)
            | server | transport | subscribers | expected | received | lost | dup | reordered | p50 ms | p90 ms | p99 ms | max ms | delivered/s | server CPU s | CPU µs/delivery | RSS/conn B | bench CPU s |
            |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
            | \(o.label) | \(o.transport) | \(confirmed) | \(expected) | \(received) | \(lost) | \(duplicated) | \(reordered) | \(f(h.percentile(0.5) / 1000)) | \(f(h.percentile(0.9) / 1000)) | \(f(h.percentile(0.99) / 1000)) | \(f(h.maximum / 1000)) | \(f(perSecond, 0)) | \(f(cpuUsed)) | \(f(cpuPerDelivery, 2)) | \(f(perConnection, 0)) | \(f(ownCPU)) |
            """
        let json = #"{"bench":"\#(o.mode.rawValue)","server":"\#(o.label)","transport":"\#(o.transport)","subscribers":\#(o.subscribers),"confirmed":\#(confirmed),"connect_failures":\#(connectFailures),"connect_s":\#(f(connectSeconds, 2)),"messages":\#(o.messages),"settle":\#(settle),"published":\#(sent),"rate":\#(o.rate),"window":\#(o.window),"size":\#(o.size),"event_bytes":\#(eventBytes),"expected":\#(expected),"received":\#(received),"lost":\#(lost),"duplicated":\#(duplicated),"reordered":\#(reordered),"p50_ms":\#(f(h.percentile(0.5) / 1000, 3)),"p90_ms":\#(f(h.percentile(0.9) / 1000, 3)),"p99_ms":\#(f(h.percentile(0.99) / 1000, 3)),"max_ms":\#(f(h.maximum / 1000, 3)),"delivered_per_s":\#(f(perSecond, 0)),"server_cpu_s":\#(f(cpuUsed, 3)),"cpu_us_per_delivery":\#(f(cpuPerDelivery, 3)),"rss_before":\#(Int(rssBefore)),"rss_idle":\#(Int(rssIdle)),"rss_after":\#(Int(rssAfter)),"rss_peak":\#(Int(rssPeak)),"rss_per_connection":\#(f(perConnection, 0)),"bench_cpu_s":\#(f(ownCPU, 3)),"scrapes":\#(scrapes.load(ordering: .relaxed))}"#
        return Report(table: table, json: json, lost: lost + (o.subscribers - confirmed))
    }
}

/// Latencies in microseconds, log-linear buckets: exact below 128, then 64 sub-buckets per power
/// of two (within 1.6 %), like HdrHistogram with two significant digits; fixed size.
struct Histogram {
    private var counts = [Int](repeating: 0, count: 128 + 57 * 64)
    private(set) var total = 0
    private(set) var maximum: Double = 0

    private static func index(_ value: UInt64) -> Int {
        if value < 128 { return Int(value) }
        let top = 63 - value.leadingZeroBitCount
        return 128 + (top - 7) * 64 + Int((value >> UInt64(top - 6)) & 63)
    }

    private static func lowerBound(_ index: Int) -> Double {
        if index < 128 { return Double(index) }
        let top = (index - 128) / 64 + 7, sub = (index - 128) % 64
        return Double((UInt64(64 + sub)) << UInt64(top - 6))
    }

    mutating func record(_ value: UInt64) {
        counts[Self.index(value)] += 1
        total += 1
        maximum = max(maximum, Double(value))
    }

    /// The value below which `p` of the recorded values fall (bucket lower bound).
    func percentile(_ p: Double) -> Double {
        guard total > 0 else { return 0 }
        let rank = Int((Double(total) * p).rounded(.up))
        var seen = 0
        for (index, count) in counts.enumerated() where count > 0 {
            seen += count
            if seen >= max(1, rank) { return Self.lowerBound(index) }
        }
        return maximum
    }
}
