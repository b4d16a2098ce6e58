import DeltacastBase
public import DeltacastCluster
public import DeltacastConfig
public import DeltacastHub
public import DeltacastLoop
public import DeltacastTLS
import DeltacastWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP/1.1 server: one listener per event loop (SO_REUSEPORT), connections owned by the
/// loop that accepted them, the router for answers, and every limit of `configuration`:
/// header timeout (408), idle keep-alive timeout, total (503) and per-IP (429) connection
/// caps, request limits (400/413/414/431...), and graceful shutdown.
///
/// `@unchecked Sendable`: `loops`, `router` and the limits are immutable after `init`;
/// connection counts are behind `Atomic`/`Locked`; everything else belongs to one loop.
public final class HTTPServer: @unchecked Sendable {
    /// The configuration in force and what is derived from it (a reload replaces it whole).
    let currentGeneration: Locked<ServerGeneration>
    var generation: ServerGeneration { currentGeneration.withLock { $0 } }
    /// The configuration in force.
    public var configuration: Configuration { generation.configuration }
    /// Whether `GET /` serves the demo dashboard.
    let dashboard: Bool
    /// Re-reads the configuration file (SIGHUP and `POST /deltacast/reload`); nil when the
    /// server was not started from a file. Errors come back as their text (`file:line:col: ...`).
    public var configurationSource: (@Sendable () -> Result<Configuration, ReloadError>)?
    /// Reloads are applied one at a time.
    let reloading = Locked<Void>(())
    /// Topics and their changes.
    public private(set) var hub: Hub!
    /// When the server was created (monotonic milliseconds).
    let startedAt = MonotonicClock.milliseconds()
    /// Structured logs (`logging.level`).
    let log: EventLog
    /// Connection ids for logs, in accept order.
    let nextConnectionID = Atomic<Int>(0)
    /// Process-wide counters for `/metrics`.
    let metrics = ServerMetrics()
    /// Each loop's counters for `/metrics`, by loop index.
    let loopCounters: [LoopCounters]
    /// Where poll topics get their state (the upstream poller, composed by the executable);
    /// nil serves publish endpoints only.
    let topicSource: (any TopicSource)?
    let loops: [EventLoop]
    let openConnections = Atomic<Int>(0)
    let connectionsPerIP = Locked<[String: Int]>([:])
    let draining = Atomic<Bool>(false)
    private var loopStates: [LoopState] = []
    /// The loop states as the hub's delivery closure reads them (from any thread).
    /// Hands the hub's changes to the loops.
    let delivery = LoopDelivery()
    /// The port the listeners are bound to (after ``start()``).
    public private(set) var port = 0
    /// The admin listener's port (after ``start()``, when `admin.listen` is set).
    public private(set) var adminPort: Int?
    /// Outstanding single-use tickets.
    let tickets: TicketStore
    /// Push connections per token subject (`limits.max_connections_per_user`).
    let connectionsPerUser = Locked<[String: Int]>([:])
    /// The TLS context, when `tls` is configured (SIGHUP reloads it: ``reloadTLS()``).
    public let tls: TLSContext?
    /// Cluster mode's link to Redis (`cluster`), nil for one process.
    public let cluster: Cluster?
    /// What the proxy saved the upstream and its clients (the migration report).
    let savings: SavingsLedger

    /// Creates the server and its event loops (not yet started). With `dashboard`, `GET /`
    /// serves the demo dashboard page; `topicSource` fills the topics of `source: poll`
    /// endpoints (without one, they never get a state).
    public init(configuration: Configuration, dashboard: Bool = false, topicSource: (any TopicSource)? = nil, cluster: Cluster? = nil) throws {
        let generation = try ServerGeneration(configuration: configuration, dashboard: dashboard)
        self.currentGeneration = Locked(generation)
        self.dashboard = dashboard
        self.tickets = TicketStore(lifetimeMilliseconds: configuration.auth.ticketTTL.wholeMilliseconds, capacity: configuration.auth.maxTickets)
        self.tls = try configuration.tls.map { tls throws(TLSError) in try TLSContext(certificate: tls.certificate, key: tls.key) }
        let count = configuration.server.eventLoops ?? HTTPServer.usableCores()
        var loops: [EventLoop] = []
        for _ in 0..<max(1, count) { loops.append(try EventLoop()) }
        self.loops = loops
        self.loopCounters = loops.map { _ in LoopCounters() }
        self.log = EventLog(level: configuration.logging.level)
        self.topicSource = topicSource
        self.cluster = cluster
        self.savings = SavingsLedger()
        self.hub = Hub(configuration: configuration, loopCount: loops.count, delivery: delivery, created: { topic in
            cluster?.topicCreated(topic)
            topicSource?.topicCreated(topic)
        }, salt: cluster?.salt, replication: cluster)
    }

    /// Usable cores: online processors, capped by a cgroup v2 `cpu.max` quota.
    public static func usableCores() -> Int {
        var cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        if let file = fopen("/sys/fs/cgroup/cpu.max", "r") {
            defer { fclose(file) }
            var line = [CChar](repeating: 0, count: 64)
            if fgets(&line, 64, file) != nil {
                let fields = String(cString: line).split(separator: " ")
                if fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1].filter { $0 != "\n" }), period > 0 {
                    cores = min(cores, max(1, Int((quota / period).rounded(.up))))
                }
            }
        }
        return max(1, cores)
    }

    /// Binds the listeners and starts the loops. Returns the bound port.
    @discardableResult
    public func start() throws(SystemError) -> Int {
        var boundPort = configuration.listen.port
        if boundPort != 0 {
            // SO_REUSEPORT would let a second proxy share the port silently, each taking half
            // the connections. A probe without it fails with EADDRINUSE if anyone listens there.
            let (probe, _) = try Socket.listen(host: configuration.listen.host, port: boundPort, reusePort: false)
            close(probe)
        }
        try topicSource?.start(hub: hub, reports: ServerReports(metrics: metrics, log: log, savings: savings))
        if let cluster {
            let log = log
            cluster.onUnavailable = { reason in log.log(.warn, "cluster_unavailable", ["reason": .string(reason)]) }
            cluster.attach(hub: hub) { [topicSource] topic in topicSource?.ownershipGained(topic) }
        }
        for (index, loop) in loops.enumerated() {
            let (fd, actual) = try Socket.listen(host: configuration.listen.host, port: boundPort, reusePort: true)
            boundPort = actual
            let state = LoopState(server: self, loop: loop, index: index, listener: fd, generation: generation)
            if index == 0, let admin = configuration.admin.listen {
                let (adminFD, adminActual) = try Socket.listen(host: admin.host, port: admin.port, reusePort: false)
                state.adminListener = adminFD
                adminPort = adminActual
            }
            loopStates.append(state)
            delivery.states.withLock { $0.append(state) }
            try loop.start(name: "deltacast-loop")
            loop.execute { state.begin() }
        }
        port = boundPort
        return boundPort
    }

    /// Graceful shutdown: stop accepting, answer `/readyz` with 503, close idle connections,
    /// let responses in flight finish, close the rest at the deadline; then stop the loops.
    /// Blocks until done.
    public func shutdown() {
        draining.store(true, ordering: .relaxed)
        let deadline = MonotonicClock.milliseconds() + Int64(configuration.server.shutdownTimeout.components.seconds * 1000)
        for state in loopStates {
            state.loop.execute { state.beginDrain(deadline: deadline) }
        }
        for state in loopStates { state.finished.wait() }
        for loop in loops { loop.stop(); loop.join() }
        topicSource?.stop()
        cluster?.stop()
    }

    /// Counts a new connection from `ip`; returns the status to refuse it with, if any.
    func admit(ip: String) -> Int? {
        let total = openConnections.add(1, ordering: .relaxed).newValue
        if total > configuration.limits.maxConnections {
            openConnections.subtract(1, ordering: .relaxed)
            metrics.refusedConnectionLimit.add(1, ordering: .relaxed)
            return 503
        }
        let refused = connectionsPerIP.withLock { counts -> Bool in
            let count = counts[ip, default: 0] + 1
            if count > configuration.limits.maxConnectionsPerIP { return true }
            counts[ip] = count
            return false
        }
        if refused {
            openConnections.subtract(1, ordering: .relaxed)
            metrics.refusedPerIP.add(1, ordering: .relaxed)
            return 429
        }
        return nil
    }

    /// Counts a push connection for `subject`; false when it would pass
    /// `limits.max_connections_per_user`.
    func admitUser(_ subject: String) -> Bool {
        connectionsPerUser.withLock { counts in
            let count = counts[subject, default: 0] + 1
            guard count <= configuration.limits.maxConnectionsPerUser else { return false }
            counts[subject] = count
            return true
        }
    }

    func releaseUser(_ subject: String) {
        connectionsPerUser.withLock { counts in
            let count = counts[subject, default: 1] - 1
            counts[subject] = count > 0 ? count : nil
        }
    }

    /// Re-reads the TLS certificate and key (SIGHUP). Live connections keep their session; new
    /// ones use the new files. On failure the old certificate stays and the error is logged.
    public func reloadTLS() {
        guard let tls else { return }
        do {
            let expiry = try tls.reload()
            log.log(.info, "tls_reload", ["certificate": .string(configuration.tls?.certificate ?? ""), "not_after": .int(Int(expiry))])
        } catch {
            log.log(.error, "tls_reload_failed", ["reason": .string(error.message)])
        }
    }

    /// Uncounts a closed connection.
    func release(ip: String) {
        openConnections.subtract(1, ordering: .relaxed)
        connectionsPerIP.withLock { counts in
            let count = counts[ip, default: 1] - 1
            counts[ip] = count > 0 ? count : nil
        }
    }
}

/// A one-shot latch on a pthread mutex and condition variable: ``wait()`` blocks until
/// ``signal()`` was called once (no Dispatch on the loop threads, which signal it).
final class Latch: @unchecked Sendable {
    // `@unchecked Sendable`: `signalled` is read and written only with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var signalled = false

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func signal() {
        pthread_mutex_lock(mutex)
        signalled = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while !signalled { pthread_cond_wait(condition, mutex) }
        pthread_mutex_unlock(mutex)
    }
}
