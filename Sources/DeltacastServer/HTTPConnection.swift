import DeltacastLoop
import DeltacastWire
#if canImport(Glibc)
import Glibc
#endif

/// One client connection, owned by one loop: reads into the loop's scratch buffer, parses,
/// answers each request in order (pipelining), writes through a bounded queue.
final class HTTPConnection: EventLoopHandler {
    unowned let state: LoopState
    let fd: Int32
    let peer: String
    private var parser: HTTPRequestParser
    private var queue: OutboundQueue
    private var head: HTTPRequestHead?
    private var closeAfterFlush = false
    private var closed = false
    /// When the first byte of the request being received arrived (header timeout), or nil.
    private var requestStartedAt: Int64?
    private var lastActivity: Int64
    /// When the current request's head was complete (for the access log's duration).
    private var headReceivedAt: Int64 = 0
    /// The epoll events registered now, so a flush changes them (a syscall) only when needed.
    private var registeredEvents = epollIn | epollEdge

    init(state: LoopState, fd: Int32, peer: String) {
        self.state = state
        self.fd = fd
        self.peer = peer
        self.parser = HTTPRequestParser(limits: state.server.limits)
        let limit = state.server.configuration.limits.sendBuffer
        self.queue = OutboundQueue(highWatermark: limit / 2, lowWatermark: limit / 8, hardLimit: limit)
        self.lastActivity = EventLoop.monotonicMilliseconds()
    }

    /// Between requests with nothing left to write.
    var isIdle: Bool { parser.isIdle && head == nil && queue.isEmpty }

    func handle(events: UInt32) {
        if events & epollIn != 0 { readAvailable() }
        if !closed { flush() }
    }

    private func readAvailable() {
        while !closed && !closeAfterFlush {
            if queue.isAboveHighWatermark { pausedForOutput = true; return }
            let count = state.loop.scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                lastActivity = EventLoop.monotonicMilliseconds()
                if requestStartedAt == nil && head == nil { requestStartedAt = lastActivity }
                parser.append(state.loop.scratch[0..<count])
                process()
                // A short read emptied the socket; with edge-triggered epoll, new data raises a
                // new event, so the read that would only return EAGAIN is skipped.
                if count < state.loop.scratch.count { return }
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && errno == EAGAIN { return }
            close()
            return
        }
    }

    private func process() {
        do {
            while true {
                // Backpressure: pipelined requests wait in the parser while responses pile up.
                if queue.isAboveHighWatermark { pausedForOutput = true; return }
                guard let event = try parser.next() else { return }
                switch event {
                case .head(let received):
                    head = received
                    headReceivedAt = EventLoop.monotonicMilliseconds()
                    requestStartedAt = nil
                    if received.expectsContinue {
                        _ = queue.enqueue(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
                    }
                case .body:
                    break  // request bodies are bounded by the parser; publish (issue 6) will use them
                case .end:
                    guard let request = head else { continue }
                    head = nil
                    respond(to: request)
                    if closeAfterFlush { return }
                    if !parser.isIdle { requestStartedAt = EventLoop.monotonicMilliseconds() }
                }
            }
        } catch {
            let response = RoutedResponse.error(error.status, "bad_request", error.reason)
            write(response, headOnly: false, close: true)
        }
    }

    private func respond(to request: HTTPRequestHead) {
        var response = state.server.router.route(request, draining: state.drainDeadline != nil,
                                                 openConnections: state.server.openConnections.load(ordering: .relaxed))
        let close = response.close || !request.keepAlive || state.drainDeadline != nil
        if let origin = request.headers["Origin"], request.method != "OPTIONS" {
            let origins = state.server.configuration.cors.origins
            if origins.contains("*") || origins.contains(origin) {
                response.headers.add(name: "Access-Control-Allow-Origin", value: origins.contains("*") ? "*" : origin)
                response.headers.add(name: "Vary", value: "Origin")
            }
        }
        if state.server.configuration.logging.access {
            let milliseconds = EventLoop.monotonicMilliseconds() - headReceivedAt
            let line = "{\"event\":\"access\",\"method\":\(String(decoding: jsonString(request.method), as: UTF8.self)),\"path\":\(String(decoding: jsonString(request.target), as: UTF8.self)),\"status\":\(response.status),\"bytes\":\(request.method == "HEAD" ? 0 : response.body.count),\"duration_ms\":\(milliseconds),\"peer\":\"\(peer)\"}\n"
            _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(1, $0.baseAddress, $0.count - 1) }
        }
        write(response, headOnly: request.method == "HEAD", close: close)
    }

    private func write(_ response: RoutedResponse, headOnly: Bool, close: Bool) {
        var headers = response.headers
        if close { headers.add(name: "Connection", value: "close") }
        let bytes = HTTPResponseWriter.response(status: response.status, headers: headers, body: response.body,
                                                date: state.dateValue(), headOnly: headOnly)
        if !queue.enqueue(bytes) { self.close(); return }
        if close { closeAfterFlush = true }
    }

    private func flush() {
        switch queue.flush(to: fd) {
        case .drained:
            if closeAfterFlush { close(); return }
            watch(epollIn | epollEdge)
            // Reading may have paused on the high watermark: bytes may wait with no new edge.
            readAvailableIfPaused()
        case .wouldBlock:
            watch(epollIn | epollOut | epollEdge)
            // Partly drained: below the low watermark, a paused reader may go on.
            if queue.isBelowLowWatermark { readAvailableIfPaused() }
        case .failed:
            close()
        }
    }

    private func watch(_ events: UInt32) {
        guard events != registeredEvents else { return }
        registeredEvents = events
        try? state.loop.modify(fd, events: events)
    }

    private var pausedForOutput = false
    /// After output drained: answer the requests already buffered, read more, and flush.
    private func readAvailableIfPaused() {
        guard pausedForOutput, !closed else { return }
        pausedForOutput = false
        process()
        if !pausedForOutput { readAvailable() }
        if !closed { flush() }
    }

    /// Applies the header timeout (408, then close) and the keep-alive idle timeout.
    func checkDeadlines(now: Int64, headerTimeout: Int64, idleTimeout: Int64) {
        if let started = requestStartedAt, head == nil, now - started >= headerTimeout {
            write(.error(408, "request_timeout", "the request header was not received within \(headerTimeout) ms"), headOnly: false, close: true)
            flush()
            if !closed { close() }
            return
        }
        if isIdle && now - lastActivity >= idleTimeout { close() }
    }

    func close() {
        guard !closed else { return }
        closed = true
        state.loop.deregister(fd)
        Glibc.close(fd)
        state.remove(self)
    }
}
