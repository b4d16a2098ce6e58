import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastTLS
import DeltacastWire
#if canImport(Glibc)
import Glibc
#endif

/// One client connection, owned by one loop: the I/O shell. It owns the socket, TLS, the
/// bounded outbound queue, the deadlines and the subscriptions; what the bytes mean is decided
/// by value types that return what to do: ``RequestSession`` for plain HTTP (pipelined requests,
/// answered in order), and once a request turns into a push stream, one ``PushSession`` (a
/// WebSocket, an event stream, or a held long-poll). Nothing here depends on which.
final class HTTPConnection: EventLoopHandler {
    // Stored properties are laid out in declaration order. The ones every delivery and flush
    // reads come first, so a fan-out to 10,000 connections touches three cache lines of each
    // (prefetched by the loop state's walks) rather than fields spread over several.
    unowned let state: LoopState
    let fd: Int32
    /// Open, paused, closing after the flush, lingering or closed: every decision to read,
    /// answer or close goes through it.
    private(set) var lifecycle = ConnectionLifecycle.open
    /// Queued in the loop's list of connections to flush at the end of this iteration.
    var flushPending = false
    /// The peer sent its FIN (about the peer, not our lifecycle): once every buffered request
    /// is answered and written, close.
    private var peerFinished = false
    /// The session's transport and framing, kept beside it (set by ``install(_:)``): read on
    /// every delivery, where reading the session itself would copy it.
    var transport: Transport?
    var framing: ChangeFraming?
    /// The epoll events registered now, so a flush changes them (a syscall) only when needed.
    private var registeredEvents = connectionEvents
    /// The TLS session, when `tls` is configured (nil on the plain and admin listeners).
    let tls: TLSStream?
    @exclusivity(unchecked) var queue: OutboundQueue
    /// The topics it receives, their cursors, and conflation.
    @exclusivity(unchecked) var subscriptions = SubscriptionSet()
    /// Every deadline's bookkeeping (header, idle, heartbeat, slow consumer, linger…).
    var deadlines: ConnectionDeadlines

    let peer: String
    /// This connection's id in logs.
    let id: Int
    /// Why it is closing, for the log line `close` writes (nil: an ordinary end).
    var closeReason: CloseReason?
    /// Plain HTTP: the requests received, taken one at a time.
    var requests: RequestSession
    /// The push stream the connection carries, nil while it is plain HTTP.
    var session: (any PushSession)?
    /// The timer of the session's ``PushSession`` deadline (a held poll's wait), if any.
    var sessionTimer: UInt64?
    /// Accepted on `admin.listen`.
    let onAdminListener: Bool
    /// The credential a push connection holds (WebSocket: renewable by an `auth` message); it
    /// counts under its subject in `limits.max_connections_per_user` while held.
    var principal: Principal?
    /// `limits.subscribe_rate` and `limits.message_rate` (WebSocket only; created on the
    /// first client message, so other connections carry one nil pointer).
    var buckets: ClientBuckets?
    /// Cluster mode: waits for Redis begun (the latest one's number is the only one whose reply
    /// is taken), and what runs when its reply comes (``awaitCluster(_:start:then:)``).
    var clusterWaits = 0
    var clusterContinuation: ((Any) -> Void)?
    /// Cluster mode: subscriptions waiting for their topic to catch up, topic key to name.
    var pendingAttaches: [String: String] = [:]
    /// Cluster mode: the ticket the request being answered presented, as Redis redeemed it.
    var redeemedTicket: (ticket: String, principal: Principal?)?

    init(state: LoopState, fd: Int32, peer: String, tls: TLSStream? = nil, admin: Bool = false) {
        self.tls = tls
        self.onAdminListener = admin
        self.id = state.context.nextConnectionID.add(1, ordering: .relaxed).newValue
        self.state = state
        self.fd = fd
        self.peer = peer
        self.requests = RequestSession(limits: state.generation.parserLimits)
        let limit = state.configuration.limits.sendBuffer
        self.queue = OutboundQueue(highWatermark: limit / 2, lowWatermark: limit / 8, hardLimit: limit)
        self.deadlines = ConnectionDeadlines(now: MonotonicClock.milliseconds())
        state.counters.adjust(nil, by: 1)
    }

    var closed: Bool { lifecycle == .closed }

    /// No push session: plain HTTP. (Asked of `transport`, set with the session: reading the
    /// session's existential from this class copies it.)
    var isPlainHTTP: Bool { transport == nil }

    /// Between requests with nothing left to write (push streams are never idle).
    var isIdle: Bool { isPlainHTTP && requests.isIdle && queue.isEmpty }

    /// What it carries now, in logs and on the status page.
    var modeName: String { session?.name ?? "http" }

    /// The session timer's callback, made once per connection: a held poll schedules one per
    /// request, and a new closure each time was an allocation per poll. `unowned`: the timer
    /// is cancelled whenever the session ends or the connection closes, so it never outlives
    /// the connection; a `weak` capture would give every held connection a side table, and
    /// every retain of it the runtime's slow path.
    lazy var sessionDeadlinePassed: () -> Void = { [unowned self] in
        self.sessionTimer = nil
        self.tickSession(now: MonotonicClock.milliseconds(), silent: false)
    }

    func handle(events: UInt32) {
        if lifecycle == .lingering { return discardUntilPeerCloses() }
        if let tls, !tls.established {
            guard continueHandshake(tls) else { return }
            // Application data may already sit decrypted in the session: read it now.
            readAvailable()
        } else if events & epollIn != 0 {
            readAvailable()
        }
        if !closed && events & epollPeerClosed != 0 { peerStoppedSending() }
        if !closed { flush() }
    }

    /// The peer shut down its side (a FIN, perhaps in the same read as its last request): a
    /// plain request still gets its answer, then the connection closes; a stream ends now,
    /// as on a read of 0 bytes. Half a request can never be completed: the connection closes
    /// as soon as what was answered is written, rather than at `server.header_timeout` (else a
    /// client that sends half a request and its FIN would hold a descriptor that long, at no
    /// cost to itself).
    private func peerStoppedSending() {
        guard isPlainHTTP else { return close() }
        peerFinished = true
        if queue.isEmpty && nothingLeftToAnswer { close() }
    }

    /// Every complete request received has been answered (and reading is not paused with more
    /// buffered): what the parser still holds, if anything, is an incomplete request.
    private var nothingLeftToAnswer: Bool { requests.awaitingHead && lifecycle != .paused }

    /// Advances the TLS handshake; true once it is complete.
    private func continueHandshake(_ tls: TLSStream) -> Bool {
        switch tls.handshake() {
        case .done:
            return true
        case .wantRead:
            watch(connectionEvents)
        case .wantWrite:
            watch(connectionEvents | epollOut)
        case .failed(let reason):
            closeReason = CloseReason(level: .debug, text: "TLS handshake failed: \(reason)")
            close()
        }
        return false
    }

    private func readAvailable() {
        while lifecycle.isAnswering {
            if queue.isAboveHighWatermark && !(session?.readsWhileOutputBacksUp ?? false) { lifecycle.pauseReading(); return }
            if let tls {
                // A TLS record may leave more decrypted bytes than one read: read to WANT_READ.
                let count = state.loop.scratch.withUnsafeMutableBytes { tls.read(into: $0) }
                if count > 0 {
                    deadlines.read(now: MonotonicClock.milliseconds())
                    received(state.loop.scratch[0..<count])
                    continue
                }
                if count == -1 { return }
                close()
                return
            }
            let count = state.loop.scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                deadlines.read(now: MonotonicClock.milliseconds())
                received(state.loop.scratch[0..<count])
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

    private func received(_ bytes: ArraySlice<UInt8>) {
        guard isPlainHTTP else { return sessionReceived(bytes) }
        if requests.awaitingHead { deadlines.requestBegan(now: deadlines.lastActivity) }
        requests.append(bytes)
        process()
    }

    /// Answers the requests received, in order, while the connection is plain HTTP.
    func process() {
        do {
            while isPlainHTTP && lifecycle.isAnswering {
                // Backpressure: pipelined requests wait in the parser while responses pile up.
                if queue.isAboveHighWatermark { lifecycle.pauseReading(); return }
                // A head counts as received when its last bytes were read (the access log's start).
                guard let step = try requests.next(now: deadlines.lastActivity) else { return }
                switch step {
                case .head(let expectsContinue):
                    deadlines.headReceived()
                    if expectsContinue { _ = queue.enqueue(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
                case .request(let request, let body):
                    respond(to: request, body: body)
                    if isPlainHTTP && requests.hasBufferedBytes { deadlines.nextRequestBuffered(now: MonotonicClock.milliseconds()) }
                }
            }
        } catch {
            let response = RoutedResponse.error(error.status, "bad_request", error.reason)
            write(response, headOnly: false, close: true)
        }
    }

    private func respond(to request: HTTPRequestHead, body: [UInt8]) {
        // A new request: nothing of an earlier one that waited for Redis is kept.
        redeemedTicket = nil
        clusterContinuation = nil
        route(request, body: body)
    }

    func write(_ response: RoutedResponse, headOnly: Bool, close: Bool) {
        var headers = response.headers
        if close { headers.add(name: "Connection", value: "close") }
        let bytes = HTTPResponseWriter.response(status: response.status, headers: headers, body: response.body,
                                                date: state.dateValue(), headOnly: headOnly)
        if !queue.enqueue(bytes) { self.close(); return }
        if close { lifecycle.closeAfterFlush() }
    }

    /// Closes once what is queued is written.
    func closeAfterFlush() { lifecycle.closeAfterFlush() }

    /// Queues bytes; false (and the connection closed) when even the hard limit is passed.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        guard !closed else { return false }
        if !queue.enqueue(bytes) { close(); return false }
        return true
    }

    /// Writes what is queued; `now` (monotonic ms) is when, for the write deadlines.
    func flush(now: Int64 = MonotonicClock.milliseconds()) {
        guard !closed else { return }
        let before = queue.pendingBytes
        let result = writeQueue()
        deadlines.wrote(progress: queue.pendingBytes < before, drained: result == .drained, now: now)
        switch result {
        case .drained:
            switch lifecycle.afterDrain(peerFinished: peerFinished, allAnswered: isPlainHTTP && nothingLeftToAnswer) {
            case .close:
                close()
                return
            case .finishClosing:
                // Plain HTTP lingers too (RFC 9112 §9.6): closed with the client's bytes unread
                // (a body past its limit, a request after a 400), the socket would answer them
                // with a reset, and a reset can destroy the answer before the client reads it.
                perform(session?.drained(closing: true) ?? [.linger])
                return
            case .carryOn:
                break
            }
            if subscriptions.conflating {
                // The snapshots owed go out now (this flush found the queue empty).
                resync()
                if !queue.isEmpty { flush(); return }
            }
            watch(connectionEvents)
            // Reading may have paused on the high watermark: bytes may wait with no new edge.
            readAvailableIfPaused()
        case .wouldBlock:
            watch(connectionEvents | epollOut)
            // Partly drained: below the low watermark, a paused reader may go on.
            if queue.isBelowLowWatermark {
                if subscriptions.conflating { resync() }
                readAvailableIfPaused()
            }
        case .failed:
            close()
        }
    }

    /// After our WebSocket close frame, or a plain HTTP answer that closes: until the peer
    /// closes (or 2 s pass), the connection is half-closed and what arrives is discarded.
    /// Closing at once would answer the peer's in-flight bytes with a reset, and a reset can
    /// destroy the close frame (and its code) or the answer (a 413, a 400) before the peer
    /// reads it.
    func beginLinger(now: Int64) {
        guard lifecycle.beginLinger() else { return }
        _ = deadlines.beginLinger(now: now)
        tls?.shutdown()
        Glibc.shutdown(fd, Int32(SHUT_WR))
        discardUntilPeerCloses()
    }

    private func discardUntilPeerCloses() {
        while !closed {
            let count = state.loop.scratch.withUnsafeMutableBytes { buffer -> Int in
                if let tls { return tls.read(into: buffer) }
                let count = read(fd, buffer.baseAddress, buffer.count)
                return count < 0 && (errno == EAGAIN || errno == EINTR) ? -1 : count
            }
            if count > 0 {
                // The peer's close frame answers ours: the handshake is complete, close now.
                if session?.receivedWhileLingering(state.loop.scratch[0..<count]) == true { close(); return }
                continue
            }
            if count == -1 { return }
            close()
        }
    }

    /// Writes what the queue holds: `write`/`writev`, or through the TLS session.
    func writeQueue() -> OutboundQueue.FlushResult {
        guard let tls else { return queue.flush(to: fd) }
        return queue.flush(scratch: &state.tlsScratch) { tls.write($0) }
    }

    private func watch(_ events: UInt32) {
        guard events != registeredEvents, !closed else { return }
        registeredEvents = events
        try? state.loop.modify(fd, events: events)
    }

    /// After output drained: answer the requests already buffered, read more, and flush.
    private func readAvailableIfPaused() {
        guard lifecycle.resumeReading() else { return }
        if isPlainHTTP { process() }
        if lifecycle != .paused { readAvailable() }
        if !closed { flush() }
    }

    /// Back to plain HTTP after a held long-poll was answered: pipelined requests go on.
    func resumeHTTP() {
        process()
        flush()
    }

    /// Shutdown: an idle connection closes; a push session ends its own way (WebSocket close
    /// 1012, a last SSE `retry:`, a held poll answered at once).
    func drain() {
        if let actions = session?.drain() {
            perform(actions)
            flush()
        } else if isIdle {
            close()
        }
    }

    func close() {
        guard lifecycle.close() else { return }
        state.counters.adjust(transport, by: -1)
        let log = state.context.log
        if let closeReason {
            log.log(closeReason.level, "close", ["conn": .int(id), "mode": .string(modeName), "code": .int(closeReason.code ?? 0), "reason": .string(closeReason.text)])
        } else if log.enabled(.debug) {
            log.log(.debug, "close", ["conn": .int(id), "mode": .string(modeName)])
        }
        cancelSessionTimer()
        detachAll()
        if let principal { state.context.releaseUser(principal.subject); self.principal = nil }
        state.loop.deregister(fd)
        tls?.shutdown()
        Glibc.close(fd)
        state.remove(self)
    }
}
