import DeltacastBase
public import DeltacastConfig
public import Synchronization
public import DeltacastLoop
#if canImport(Glibc)
import Glibc
#endif

/// Why a Redis command got no reply.
public enum RedisFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not connected (connecting, backing off, or the connection just failed): the reason.
    case unavailable(String)
    /// No reply within the command's timeout (the connection is closed and reopened: replies
    /// come in order, so a late one cannot be told apart).
    case timedOut
    /// Redis answered something that is not RESP2, or past a limit.
    case protocolError(String)

    public var description: String {
        switch self {
        case .unavailable(let reason): "redis unavailable: \(reason)"
        case .timedOut: "redis did not answer within the command timeout"
        case .protocolError(let reason): "redis protocol error: \(reason)"
        }
    }
}

/// One connection to Redis, owned by an event loop: commands are pipelined (sent as soon as
/// they are issued, replies matched in order), each with a deadline; a failed connection fails
/// its pending commands and is reopened after a backoff with jitter (100 ms doubling to 5 s).
/// In subscriber mode, replies that no command waits for (`message` pushes) go to ``onPush``.
///
/// Every method runs on `loop`, and nothing waits for a reply: each command's callback hears it.
public final class RedisConnection: EventLoopHandler, @unchecked Sendable {
    public typealias Callback = (Result<RESPValue, RedisFailure>) -> Void

    /// The limits of one connection.
    public struct Limits: Sendable {
        /// Time for a reply to each command (and for the TCP connect). Default 2 s.
        public var commandTimeout: Int64 = 2000
        /// Commands waiting for a reply; past it a command fails at once. Default 10,000.
        public var maximumPending = 10_000
        /// Bytes queued to send; past it a command fails at once. Default 64 MiB.
        public var maximumQueued = 64 << 20
        /// Reconnect backoff bounds (each wait is jittered to 50–100 %).
        public var backoffFloor: Int64 = 100
        public var backoffCeiling: Int64 = 5000
        public init() {}
    }

    public let loop: EventLoop
    public let address: Configuration.RedisURL
    public let name: String
    public let limits: Limits
    /// After each (re)connect, once `AUTH`/`SELECT` succeeded: resubscribe, reload scripts.
    public var onReady: (() -> Void)?
    /// When the connection is lost or cannot be made: the reason.
    public var onDown: ((String) -> Void)?
    /// Replies no command waits for (subscriber mode).
    public var onPush: ((RESPValue) -> Void)?
    /// Commands sent since the start (a script is one), readable from any thread.
    public let sent = Atomic<Int>(0)

    private enum State { case idle, connecting, ready, waiting, stopped }
    private var state = State.idle
    private var fd: Int32 = -1
    private var decoder = RESPDecoder()
    private var queue: OutboundQueue
    private var pending: [(deadline: Int64, callback: Callback?)] = []
    private var pendingStart = 0
    private var backoff: Int64
    private var timer: UInt64?
    private var connectTimer: UInt64?
    /// Commands issued while connecting: sent once the handshake is done.
    private var held: [([UInt8], Int64, Callback?)] = []
    /// Whether it reported down since it was last ready (one report per outage).
    private var reportedDown = false

    public init(loop: EventLoop, address: Configuration.RedisURL, name: String, limits: Limits = Limits()) {
        self.loop = loop
        self.address = address
        self.name = name
        self.limits = limits
        self.queue = OutboundQueue(highWatermark: limits.maximumQueued, lowWatermark: limits.maximumQueued / 2, hardLimit: limits.maximumQueued)
        self.backoff = limits.backoffFloor
    }

    /// Whether commands can be sent now.
    public var isReady: Bool { state == .ready }

    /// Whether a command sent now is sent or held until the handshake is done (not failed at once).
    public var acceptsCommands: Bool { state == .ready || state == .connecting }

    /// Whether no command waits for a reply (it may be closed without failing one).
    public var isIdle: Bool { pendingStart == pending.count && held.isEmpty }

    /// Connects (at once when called on the loop, so commands sent next wait for the
    /// handshake); reconnects by itself until ``stop()``.
    public func start() {
        guard loop.inLoop else { return loop.execute { [self] in start() } }
        if state == .idle { connect() }
    }

    /// Closes and stops reconnecting; pending commands fail.
    public func stop() {
        loop.execute { [self] in
            fail("stopped")
            state = .stopped
        }
    }

    // MARK: Commands

    /// Sends `command` (on the loop); `callback` gets its reply or failure on the loop.
    public func send(_ command: [[UInt8]], timeoutMilliseconds: Int64? = nil, _ callback: Callback?) {
        let bytes = RESPEncoder.command(command)
        let deadline = MonotonicClock.milliseconds() + (timeoutMilliseconds ?? limits.commandTimeout)
        switch state {
        case .ready:
            enqueue(bytes, deadline: deadline, callback)
        case .connecting where held.count < limits.maximumPending:
            held.append((bytes, deadline, callback))
        default:
            callback?(.failure(.unavailable(state == .stopped ? "stopped" : "not connected to \(address.host):\(address.port)")))
        }
    }

    public func send(_ command: [String], timeoutMilliseconds: Int64? = nil, _ callback: Callback?) {
        send(command.map { Array($0.utf8) }, timeoutMilliseconds: timeoutMilliseconds, callback)
    }

    private func enqueue(_ bytes: [UInt8], deadline: Int64, _ callback: Callback?) {
        guard pending.count - pendingStart < limits.maximumPending, queue.enqueue(bytes) else {
            callback?(.failure(.unavailable("more than \(limits.maximumPending) commands or \(limits.maximumQueued) bytes wait for Redis")))
            return
        }
        pending.append((deadline, callback))
        sent.add(1, ordering: .relaxed)
        flush()
        armTimer()
    }

    // MARK: Connection

    private func connect() {
        state = .connecting
        decoder = RESPDecoder()
        do {
            fd = try Socket.startConnect(host: address.host, port: address.port)
        } catch {
            return down("cannot connect to \(address.host):\(address.port): \(error)")
        }
        do {
            try loop.register(fd, events: EventLoop.readable | EventLoop.writable, handler: self)
        } catch {
            close(fd)
            fd = -1
            return down("cannot watch the Redis socket: \(error)")
        }
        connectTimer = loop.schedule(afterMilliseconds: limits.commandTimeout) { [weak self] in
            guard let self, self.state == .connecting, self.fd >= 0, !self.handshaking else { return }
            self.down("connect to \(self.address.host):\(self.address.port) timed out after \(self.limits.commandTimeout) ms")
        }
    }

    /// True once TCP connected and the AUTH/SELECT replies are awaited.
    private var handshaking = false

    private func connected() {
        if let connectTimer { loop.cancelTimer(connectTimer); self.connectTimer = nil }
        handshaking = true
        state = .ready   // so the handshake's own commands go out
        var steps: [[String]] = []
        if let password = address.password { steps.append(address.user.map { ["AUTH", $0, password] } ?? ["AUTH", password]) }
        if address.database != 0 { steps.append(["SELECT", String(address.database)]) }
        steps.append(["CLIENT", "SETNAME", name])
        var failed = false
        for (index, step) in steps.enumerated() {
            send(step) { [weak self] result in
                guard let self, !failed else { return }
                if case .success(.error(let message)) = result, !(step[0] == "CLIENT") {
                    failed = true
                    return self.down("\(step[0]) refused: \(message)")
                }
                if case .failure(let failure) = result { failed = true; return self.down("\(step[0]): \(failure)") }
                if index == steps.count - 1 { self.ready() }
            }
        }
    }

    private func ready() {
        handshaking = false
        backoff = limits.backoffFloor
        reportedDown = false
        let waiting = held
        held = []
        for (bytes, deadline, callback) in waiting { enqueue(bytes, deadline: deadline, callback) }
        onReady?()
    }

    /// The connection failed: fail what waits, report once, and try again after the backoff.
    private func down(_ reason: String) {
        guard state != .stopped else { return }
        // Not ready from here on, for whoever hears of the failure; reported before the waiting
        // commands fail, so they can also know why.
        state = .waiting
        if !reportedDown { reportedDown = true; onDown?(reason) }
        fail(reason)
        let wait = backoff / 2 + Int64.random(in: 0...(backoff / 2))
        backoff = min(backoff * 2, limits.backoffCeiling)
        loop.schedule(afterMilliseconds: wait) { [weak self] in
            guard let self, self.state == .waiting else { return }
            self.connect()
        }
    }

    private func fail(_ reason: String) {
        if fd >= 0 {
            loop.deregister(fd)
            close(fd)
            fd = -1
        }
        if let connectTimer { loop.cancelTimer(connectTimer); self.connectTimer = nil }
        handshaking = false
        queue = OutboundQueue(highWatermark: limits.maximumQueued, lowWatermark: limits.maximumQueued / 2, hardLimit: limits.maximumQueued)
        let waiting = pending[pendingStart...].map(\.callback) + held.map(\.2)
        pending = []
        pendingStart = 0
        held = []
        for callback in waiting { callback?(.failure(.unavailable(reason))) }
    }

    // MARK: I/O

    public func handle(events: UInt32) {
        if state == .connecting && !handshaking {
            let error = Socket.connectError(fd)
            guard error == 0 else { return down("cannot connect to \(address.host):\(address.port): \(String(cString: strerror(error)))") }
            try? loop.modify(fd, events: EventLoop.readable)
            connected()
        }
        if events & EventLoop.readable != 0 || events & EventLoop.failed != 0 { readAvailable() }
        if fd >= 0 && events & EventLoop.writable != 0 { flush() }
    }

    private func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while fd >= 0 {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                decoder.append(buffer[0..<count])
                decodeReplies()
                if count < buffer.count { return }
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && errno == EAGAIN { return }
            return down(count == 0 ? "Redis closed the connection" : "read failed: \(String(cString: strerror(errno)))")
        }
    }

    private func decodeReplies() {
        while fd >= 0 {
            let value: RESPValue?
            do { value = try decoder.next() } catch {
                return down("Redis sent bytes that are not RESP2: \(error)")
            }
            guard let value else { return }
            if pendingStart < pending.count, !(isPush(value) && onPush != nil) {
                let callback = pending[pendingStart].callback
                pending[pendingStart].callback = nil
                pendingStart += 1
                if pendingStart > 1024 && pendingStart * 2 > pending.count { pending.removeFirst(pendingStart); pendingStart = 0 }
                callback?(.success(value))
            } else if let onPush {
                onPush(value)
            }
        }
    }

    /// A pub/sub message (an array starting with `message`, `pmessage` or `smessage`) or a
    /// sharded subscription Redis ended (`sunsubscribe`: its slot moved): never a reply.
    private func isPush(_ value: RESPValue) -> Bool {
        guard let first = value.elements?.first?.text else { return false }
        return first == "message" || first == "pmessage" || first == "smessage" || first == "sunsubscribe"
    }

    private func flush() {
        guard fd >= 0, !queue.isEmpty else { return }
        switch queue.flush(to: fd) {
        case .drained: try? loop.modify(fd, events: EventLoop.readable)
        case .wouldBlock: try? loop.modify(fd, events: EventLoop.readable | EventLoop.writable)
        case .failed(let code): down("write failed: \(String(cString: strerror(code)))")
        }
    }

    /// One timer for the oldest pending command's deadline.
    private func armTimer() {
        guard timer == nil, pendingStart < pending.count else { return }
        let delay = max(0, pending[pendingStart].deadline - MonotonicClock.milliseconds())
        timer = loop.schedule(afterMilliseconds: delay) { [weak self] in
            guard let self else { return }
            self.timer = nil
            let now = MonotonicClock.milliseconds()
            if self.pendingStart < self.pending.count, self.pending[self.pendingStart].deadline <= now {
                // Replies come in order: the connection cannot skip one. Start afresh.
                let callback = self.pending[self.pendingStart].callback
                self.pending[self.pendingStart].callback = nil
                self.down("a command got no reply within \(self.limits.commandTimeout) ms")
                callback?(.failure(.timedOut))
                return
            }
            self.armTimer()
        }
    }
}
