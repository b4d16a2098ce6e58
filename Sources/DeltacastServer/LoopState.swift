import CSystemLinux
import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire
#if canImport(Glibc)
import Glibc
#endif

let epollIn: UInt32 = 0x001, epollOut: UInt32 = 0x004, epollEdge: UInt32 = 0x8000_0000
/// The peer shut down its writing side (`EPOLLRDHUP`): a FIN that arrived with the last bytes
/// raises no event of its own under edge triggering, so connections ask for this one.
let epollPeerClosed: UInt32 = 0x2000
/// What a client connection is watched for while it has nothing to write.
let connectionEvents = epollIn | epollEdge | epollPeerClosed

/// What one event loop owns: its listener, its connections, and the timer that sweeps their
/// deadlines (one timer per loop, none per connection). Touched only on `loop`.
final class LoopState: EventLoopHandler, @unchecked Sendable {
    unowned let server: HTTPServer
    /// What the connections of this loop may ask of the server.
    var context: any ConnectionContext { server }
    let loop: EventLoop
    /// This loop's position among the server's loops (the hub counts subscribers per loop).
    let index: Int
    /// Connections of this loop subscribed to each topic, by topic key.
    private var subscribers = SubscriberTable<HTTPConnection>()
    /// Compressors for messages to one connection, by window size (server_no_context_takeover
    /// lets one serve the whole loop). Level 1: what they compress goes to one client, so its
    /// cost is not shared as a change's frame's is (the hub compresses those at level 6).
    private var deflaters: [Int: Deflater] = [:]
    /// This loop's counters for `/metrics`.
    let counters: LoopCounters
    /// The configuration this loop serves with: the server's, handed over by each reload.
    private(set) var generation: ServerGeneration
    var configuration: Configuration { generation.configuration }
    /// The connections' deadlines, from the configuration (``ConnectionDeadlines``).
    private(set) var deadlineLimits = ConnectionDeadlines.Limits(headerTimeout: 0, idleTimeout: 0, slowConsumer: 0, tlsHandshake: 0, sseHeartbeat: 0, expiryGrace: 0)
    private(set) var sseRetryMilliseconds = 0
    private(set) var webSocketPingMilliseconds: Int64 = 0
    var listener: Int32
    /// The `admin.listen` socket (loop 0 only), or -1.
    var adminListener: Int32 = -1
    private var adminHandler: AdminListener?
    /// 16 KiB that several small buffers are copied into to leave in one TLS record.
    var tlsScratch = [UInt8](repeating: 0, count: 16 * 1024)
    var connections: [Int32: HTTPConnection] = [:]
    var date = HTTPDate()
    var drainDeadline: Int64?
    let finished = Latch()

    init(server: HTTPServer, loop: EventLoop, index: Int, listener: Int32, generation: ServerGeneration) {
        self.server = server
        self.loop = loop
        self.index = index
        self.listener = listener
        self.counters = server.loopCounters[index]
        self.generation = generation
        takeTimings()
    }

    private func takeTimings() {
        let settings = configuration
        deadlineLimits = ConnectionDeadlines.Limits(
            headerTimeout: settings.server.headerTimeout.wholeMilliseconds, idleTimeout: settings.server.idleTimeout.wholeMilliseconds,
            slowConsumer: settings.limits.slowConsumerTimeout.wholeMilliseconds,
            tlsHandshake: (settings.tls?.handshakeTimeout ?? Configuration.TLS.defaultHandshakeTimeout).wholeMilliseconds,
            sseHeartbeat: settings.server.sseHeartbeat.wholeMilliseconds, expiryGrace: settings.auth.expiryGrace.wholeMilliseconds)
        sseRetryMilliseconds = Int(settings.server.sseRetry.wholeMilliseconds)
        webSocketPingMilliseconds = settings.server.websocketPing.wholeMilliseconds
    }

    /// A reload: new requests and renewals use `next`; subscriptions to `changedEndpoints`
    /// are checked against their new `allow` and `scopes`, and refused ones end (`forbidden`).
    func apply(_ next: ServerGeneration, changedEndpoints: Set<String>) {
        generation = next
        takeTimings()
        guard !changedEndpoints.isEmpty else { return }
        for connection in Array(connections.values) where !connection.subscriptions.isEmpty {
            connection.recheckAccess(endpoints: changedEndpoints)
        }
    }

    func addSubscriber(_ connection: HTTPConnection, topic: String) {
        subscribers.insert(connection, topic: topic)
    }

    func removeSubscriber(_ connection: HTTPConnection, topic: String) {
        subscribers.remove(connection, topic: topic)
    }

    /// How many connections ahead ``walk(_:_:)`` prefetches: enough to cover a cache miss
    /// (a few hundred nanoseconds) with the work of the connections in between.
    private static let prefetchDistance = 6

    /// A change from the hub: the same bytes queued for every local subscriber. The writes wait
    /// for the end of this batch of loop tasks, so changes that arrive together leave in one
    /// write (writev) per connection, not one per change.
    ///
    /// The walk is over a dense array of references (a copy: a delivery may unsubscribe a
    /// connection, a held poll it answers), and the first cache lines of the connection
    /// ``prefetchDistance`` ahead are requested before each one is handled. Spread over the
    /// heap, each connection's first touch was the largest single cost in user space.
    func deliver(_ change: Change) {
        guard let connections = subscribers[change.key] else { return }
        // Counted here, once per change: per delivery, the loop's shared counters cost two
        // atomic adds and the retains of reaching them.
        var tally = DeliveryTally()
        Self.walk(connections) { connection in
            if connection.deliver(change, tally: &tally) { flushSoon(connection) }
        }
        counters.record(tally)
    }

    /// Calls `body` with each connection in turn, the first three cache lines of the one
    /// ``prefetchDistance`` ahead requested first: its header and the fields a delivery or a
    /// flush reads (``HTTPConnection`` declares those first: about 180 bytes).
    @inline(__always)
    private static func walk(_ connections: [HTTPConnection], _ body: (HTTPConnection) -> Void) {
        let count = connections.count
        connections.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            // An array of class references stores the object pointers themselves.
            let objects = UnsafeRawPointer(base).assumingMemoryBound(to: UnsafeRawPointer.self)
            func prefetch(_ index: Int) {
                deltacast_prefetch(objects[index])
                deltacast_prefetch(objects[index] + 64)
                deltacast_prefetch(objects[index] + 128)
            }
            for index in 0..<min(count, prefetchDistance) { prefetch(index) }
            for index in 0..<count {
                if index + prefetchDistance < count { prefetch(index + prefetchDistance) }
                body(buffer[index])
            }
        }
    }

    /// Connections with queued changes, flushed once per loop iteration.
    private var dirty: [HTTPConnection] = []
    private var flushScheduled = false

    func flushSoon(_ connection: HTTPConnection) {
        if !connection.flushPending {
            connection.flushPending = true
            dirty.append(connection)
        }
        if !flushScheduled {
            flushScheduled = true
            // Queued behind the delivery tasks already pending: it runs once they all have.
            loop.execute { [unowned self] in self.flushDirty() }
        }
    }

    /// The list being flushed, kept between flushes for its capacity.
    private var flushing: [HTTPConnection] = []

    /// Writes every dirty connection, prefetching ahead as ``deliver(_:)`` does: by the time a
    /// fan-out's last connection was queued, its first ones have left the cache. One clock read
    /// serves the whole batch (its write deadlines count in milliseconds).
    private func flushDirty() {
        flushScheduled = false
        // Swapped, not copied: a flush may make another connection dirty (a held poll answered
        // in order), and it then waits for the next batch.
        swap(&flushing, &dirty)
        let now = MonotonicClock.milliseconds()
        Self.walk(flushing) { connection in
            connection.flushPending = false
            connection.flush(now: now)
        }
        flushing.removeAll(keepingCapacity: true)
    }

    func deflater(windowBits: Int) -> Deflater {
        if let existing = deflaters[windowBits] { return existing }
        let created = Deflater(windowBits: windowBits, level: 1)
        deflaters[windowBits] = created
        return created
    }

    func begin() {
        try? loop.register(listener, events: epollIn | epollEdge, handler: self)
        if adminListener >= 0 {
            let handler = AdminListener(state: self)
            adminHandler = handler
            try? loop.register(adminListener, events: epollIn | epollEdge, handler: handler)
        }
        scheduleSweep()
    }

    /// Sweep period: a quarter of the shortest timeout, between 50 ms and 1 s.
    private var sweepMilliseconds: Int64 {
        let shortest = min(configuration.server.headerTimeout, configuration.server.idleTimeout)
        let milliseconds = shortest.wholeMilliseconds
        return min(1000, max(50, milliseconds / 4))
    }

    private func scheduleSweep() {
        // `unowned`, never `weak`, in this class's closures: one weak reference gives an object a
        // side table for life, and then every access through its connections' `unowned let
        // state` (several per delivery) takes the runtime's slow path. The server holds each
        // loop state until its loop has ended, and an ended loop drops its timers.
        loop.schedule(afterMilliseconds: sweepMilliseconds) { [unowned self] in
            self.sweep()
            if self.drainDeadline == nil || !self.connections.isEmpty { self.scheduleSweep() }
        }
    }

    func dateValue() -> String {
        date.value(secondsSince1970: Int(WallClock.milliseconds() / 1000))
    }

    /// Accepts every pending connection (edge-triggered).
    func handle(events: UInt32) { accept(from: listener, admin: false) }

    /// Accepts every pending connection of `socket`; `admin` marks the `admin.listen` socket
    /// (plain HTTP, admin routes only).
    func accept(from socket: Int32, admin: Bool) {
        while socket >= 0 {
            let accepted: (fd: Int32, peer: String)
            do {
                guard let next = try Socket.accept(socket) else { return }
                accepted = next
            } catch {
                // Out of descriptors (EMFILE, ENFILE) or buffers: the listener is edge-triggered,
                // so nothing wakes this loop again until a new client arrives. Try again in
                // 100 ms (never in a busy loop); the clients waiting in the backlog are
                // accepted as soon as descriptors free up.
                acceptFailed(error, socket: socket, admin: admin)
                return
            }
            if let status = server.admit(ip: accepted.peer) {
                let response = RoutedResponse.error(status, status == 503 ? "too_many" : "too_many",
                    status == 503 ? "the server is at limits.max_connections" : "too many connections from \(accepted.peer) (limits.max_connections_per_ip)",
                    headers: ["Retry-After": "1", "Connection": "close"])
                let bytes = HTTPResponseWriter.response(status: status, headers: response.headers, body: response.body, date: dateValue())
                _ = bytes.withUnsafeBytes { send(accepted.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(accepted.fd)
                continue
            }
            let tls = admin ? nil : server.tls?.session(fd: accepted.fd)
            if server.tls != nil && !admin && tls == nil {
                close(accepted.fd)
                server.release(ip: accepted.peer)
                continue
            }
            let connection = HTTPConnection(state: self, fd: accepted.fd, peer: accepted.peer, tls: tls, admin: admin)
            connections[accepted.fd] = connection
            if server.log.enabled(.debug) { server.log.log(.debug, "connect", ["conn": .int(connection.id), "peer": .string(accepted.peer)]) }
            do {
                try loop.register(accepted.fd, events: connectionEvents, handler: connection)
            } catch {
                connection.close()
            }
        }
    }

    /// A retry of `accept` is scheduled (one at a time).
    private var acceptRetryPending = false

    private func acceptFailed(_ error: SystemError, socket: Int32, admin: Bool) {
        counters.acceptFailures.add(1, ordering: .relaxed)
        guard !acceptRetryPending else { return }
        acceptRetryPending = true
        server.log.log(.warn, "accept_failed", ["reason": .string(error.description), "retry_ms": .int(100)])
        loop.schedule(afterMilliseconds: 100) { [unowned self] in
            self.acceptRetryPending = false
            let current = admin ? self.adminListener : self.listener
            if current >= 0 && current == socket { self.accept(from: socket, admin: admin) }
        }
    }

    func remove(_ connection: HTTPConnection) {
        connections[connection.fd] = nil
        server.release(ip: connection.peer)
        if drainDeadline != nil && connections.isEmpty { finished.signal() }
    }

    private func sweep() {
        let now = MonotonicClock.milliseconds()
        let wallClock = unixMilliseconds()
        var slowest: [(id: Int, pendingBytes: Int, mode: String, idleMilliseconds: Int64)] = []
        for connection in Array(connections.values) {
            connection.checkDeadlines(now: now, wallClock: wallClock, limits: deadlineLimits)
            let pending = connection.queue.pendingBytes
            if pending > 0, connection.session?.streams == true, slowest.count < 5 || pending > slowest[slowest.count - 1].pendingBytes {
                slowest.append((connection.id, pending, connection.modeName, now - connection.deadlines.lastProgress))
                slowest.sort { $0.pendingBytes > $1.pendingBytes }
                if slowest.count > 5 { slowest.removeLast() }
            }
        }
        counters.slowest.withLock { $0 = slowest }
        if index == 0 { server.sampleSavings(now: now) }
        if let drainDeadline {
            if now >= drainDeadline { for connection in Array(connections.values) { connection.close() } }
            if connections.isEmpty { finished.signal() }
        }
    }


    /// Stops accepting; closes idle connections; the rest close after their response.
    func beginDrain(deadline: Int64) {
        drainDeadline = deadline
        if listener >= 0 {
            loop.deregister(listener)
            Glibc.close(listener)
            listener = -1
        }
        if adminListener >= 0 {
            loop.deregister(adminListener)
            Glibc.close(adminListener)
            adminListener = -1
        }
        for connection in Array(connections.values) { connection.drain() }
        if connections.isEmpty { finished.signal() }
    }
}

/// The `admin.listen` socket's readiness handler: accepts onto the loop that owns it.
final class AdminListener: EventLoopHandler {
    unowned let state: LoopState
    init(state: LoopState) { self.state = state }
    func handle(events: UInt32) { state.accept(from: state.adminListener, admin: true) }
}

/// The connections of one loop subscribed to one topic: a dense array to walk on each change,
/// and each connection's position in it, so a removal is a swap with the last one (the order
/// of deliveries among connections is not kept, and nothing relies on it).
struct SubscriberList<Connection: AnyObject> {
    private(set) var connections: [Connection] = []
    private var positions: [ObjectIdentifier: Int] = [:]

    var isEmpty: Bool { connections.isEmpty }

    /// Adds `connection` (once: a second insert changes nothing).
    mutating func insert(_ connection: Connection) {
        let key = ObjectIdentifier(connection)
        guard positions[key] == nil else { return }
        positions[key] = connections.count
        connections.append(connection)
    }

    /// Removes `connection`, if present; the last connection takes its place. The array and the
    /// index keep their storage when the list empties (``SubscriberTable`` reuses it).
    mutating func remove(_ connection: Connection) {
        guard let position = positions.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        let last = connections.removeLast()
        if position < connections.count {
            connections[position] = last
            positions[ObjectIdentifier(last)] = position
        }
    }

    /// How many connections the list holds room for without growing (tests).
    var capacity: Int { connections.capacity }
}

/// Each topic's ``SubscriberList`` on one loop, by topic key. An emptied list leaves the table,
/// but its storage is kept (one spare, cleared) for the next topic that needs a list: held
/// polls empty their topic's list on every change and fill it again at once, and building it
/// anew each time cost a dozen reallocations of its array and index as it grew back.
struct SubscriberTable<Connection: AnyObject> {
    private var lists: [String: SubscriberList<Connection>] = [:]
    /// At most one emptied list, its capacity kept.
    private(set) var spare: SubscriberList<Connection>?

    /// Topics with at least one subscriber.
    var count: Int { lists.count }

    /// The subscribers of `topic`, or nil when it has none.
    subscript(topic: String) -> [Connection]? { lists[topic]?.connections }

    mutating func insert(_ connection: Connection, topic: String) {
        if lists[topic] == nil, let reused = spare {
            spare = nil
            lists[topic] = reused
        }
        lists[topic, default: SubscriberList()].insert(connection)
    }

    mutating func remove(_ connection: Connection, topic: String) {
        guard let index = lists.index(forKey: topic) else { return }
        lists.values[index].remove(connection)
        guard lists.values[index].isEmpty else { return }
        let emptied = lists.remove(at: index).value
        if spare == nil { spare = emptied }
    }
}

/// The hub's changes to the event loops: each loop's ``LoopState`` delivers a change to its
/// subscribed connections on its own thread.
final class LoopDelivery: ChangeDelivery {
    /// Every loop's state, by loop index (filled as the loops start).
    let states = Locked<[LoopState]>([])

    func deliver(_ change: Change, toLoop loop: Int) {
        guard let state = states.withLock({ loop < $0.count ? $0[loop] : nil }) else { return }
        state.loop.execute { state.deliver(change) }
    }
}
