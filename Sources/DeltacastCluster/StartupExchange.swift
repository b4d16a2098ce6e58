import DeltacastBase
import DeltacastConfig
import DeltacastLoop
import DeltacastWire
#if canImport(Glibc)
import Glibc
#endif

/// Commands sent to Redis once, at start-up, on the calling thread and its own socket, before
/// any event loop runs or anything is served (the shared salt: passthrough topics are named
/// with it). Everything after start-up goes through ``RedisConnection`` on the cluster loop.
enum StartupExchange {
    /// What a node learns before it starts: the shared salt, and a Redis Cluster's slot map.
    struct Joined {
        var salt: [UInt8]
        var map: SlotMap?
    }

    /// Reads (or proposes) the salt at `saltKey`, from one Redis or from the primary that
    /// serves its slot, after reading the slot map from the first seed that answers. Tries again
    /// every fifth of a second until `startTimeout` ms passed; a seed that is not a cluster node
    /// fails at once.
    static func join(_ url: Configuration.RedisURL, saltKey: String, startTimeout: Int64) throws(Cluster.StartError) -> Joined {
        let proposal = Base64.encode((0..<18).map { _ in UInt8.random(in: 0...255) })
        let deadline = MonotonicClock.milliseconds() + startTimeout
        var lastError = "no answer"
        while MonotonicClock.milliseconds() < deadline {
            let attempt = MonotonicClock.milliseconds()
            var map: SlotMap?
            var target = url
            if url.isCluster {
                for seed in url.seeds where map == nil {
                    switch run(url.at(host: seed.host, port: seed.port), [["CLUSTER", "SLOTS"]], deadlineMilliseconds: min(deadline, attempt + 2000)) {
                    case .success(let replies):
                        if case .error(let message) = replies[0], message.contains("cluster support disabled") {
                            throw Cluster.StartError(description: "the redis-cluster seed \(seed) is not a Redis Cluster node (\(message)); use redis:// for one Redis")
                        }
                        switch SlotMap.parse(replies[0], fallbackHost: seed.host) {
                        case .success(let read) where read.isComplete: map = read
                        case .success(let read): lastError = "the slot map from \(seed) covers \(read.covered) of 16384 slots (CLUSTERDOWN): assign every slot"
                        case .failure(let message): lastError = "\(seed): \(message)"
                        }
                    case .failure(let failure):
                        lastError = "\(seed): \(failure)"
                    }
                }
                if let primary = map?.primary(of: HashSlot.of(saltKey)) { target = url.at(host: primary.host, port: primary.port) }
            }
            if !url.isCluster || map != nil {
                switch run(target, [["SET", saltKey, proposal, "NX"], ["GET", saltKey]], deadlineMilliseconds: min(deadline, attempt + 2000)) {
                case .success(let replies):
                    if case .bulk(let bytes?) = replies[1] { return Joined(salt: bytes, map: map) }
                    lastError = "unexpected reply \(replies[1])"
                case .failure(let failure):
                    lastError = failure.description
                }
            }
            // Redis not there yet: the next attempt a fifth of a second after this one began.
            let wait = attempt + 200 - MonotonicClock.milliseconds()
            if wait > 0 { usleep(UInt32(wait * 1000)) }
        }
        throw Cluster.StartError(description: "cannot reach Redis at \(url) within \(startTimeout / 1000) s: \(lastError)")
    }

    /// Sends `commands` (after `AUTH`/`SELECT` when the URL asks) and returns their replies in
    /// order; fails when `deadlineMilliseconds` (monotonic) passes first.
    static func run(_ address: Configuration.RedisURL, _ commands: [[String]], deadlineMilliseconds: Int64) -> Result<[RESPValue], RedisFailure> {
        var steps: [[String]] = []
        if let password = address.password { steps.append(address.user.map { ["AUTH", $0, password] } ?? ["AUTH", password]) }
        if address.database != 0 { steps.append(["SELECT", String(address.database)]) }
        let fd: Int32
        do { fd = try Socket.startConnect(host: address.host, port: address.port) } catch {
            return .failure(.unavailable("cannot connect to \(address.host):\(address.port): \(error)"))
        }
        defer { close(fd) }
        guard ready(fd, Int16(POLLOUT), deadlineMilliseconds) else { return .failure(.timedOut) }
        let error = Socket.connectError(fd)
        guard error == 0 else { return .failure(.unavailable("cannot connect to \(address.host):\(address.port): \(String(cString: strerror(error)))")) }
        var pending = (steps + commands).flatMap { RESPEncoder.command($0.map { Array($0.utf8) }) }[...]
        while !pending.isEmpty {
            guard ready(fd, Int16(POLLOUT), deadlineMilliseconds) else { return .failure(.timedOut) }
            let written = pending.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard written > 0 else { return .failure(.unavailable("write failed: \(String(cString: strerror(errno)))")) }
            pending = pending.dropFirst(written)
        }
        var decoder = RESPDecoder()
        var replies: [RESPValue] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while replies.count < steps.count + commands.count {
            do {
                if let value = try decoder.next() {
                    if replies.count < steps.count, case .error(let message) = value {
                        return .failure(.unavailable("\(steps[replies.count][0]) refused: \(message)"))
                    }
                    replies.append(value)
                    continue
                }
            } catch {
                return .failure(.protocolError("Redis sent bytes that are not RESP2: \(error)"))
            }
            guard ready(fd, Int16(POLLIN), deadlineMilliseconds) else { return .failure(.timedOut) }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard count > 0 else { return .failure(.unavailable(count == 0 ? "Redis closed the connection" : "read failed: \(String(cString: strerror(errno)))")) }
            decoder.append(buffer[0..<count])
        }
        return .success(Array(replies.dropFirst(steps.count)))
    }

    /// Whether `fd` is ready for `events` before the deadline.
    private static func ready(_ fd: Int32, _ events: Int16, _ deadline: Int64) -> Bool {
        while true {
            let left = deadline - MonotonicClock.milliseconds()
            guard left > 0 else { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&entry, 1, Int32(min(left, 1000)))
            if result > 0 { return true }
            if result < 0 && errno != EINTR { return false }
        }
    }
}
