import DeltacastBase
import DeltacastClient
import DeltacastConfig
import DeltacastLoop
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import DeltacastCluster
#if canImport(Glibc)
import Glibc
#endif

/// A loopback server that plays Redis from a script: for each command it reads, `answer`
/// returns the bytes to send (nil: send nothing). It counts connections.
final class ScriptedRedis: @unchecked Sendable {
    let listener: Int32
    let port: Int
    let connections = Atomic<Int>(0)
    /// Signalled on each accepted connection.
    let accepted = DispatchSemaphore(value: 0)
    let commands = Locked<[[String]]>([])
    private let answer: @Sendable ([String], Int) -> [UInt8]?

    init(_ answer: @escaping @Sendable ([String], Int) -> [UInt8]?) throws {
        (listener, port) = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) & ~O_NONBLOCK)
        self.answer = answer
        Thread.detachNewThread { [self] in
            while true {
                let client = Glibc.accept(listener, nil, nil)
                guard client >= 0 else { return }
                _ = connections.add(1, ordering: .relaxed)
                accepted.signal()
                Thread.detachNewThread { [self] in serve(client) }
            }
        }
    }

    deinit { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var decoder = RESPDecoder()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(client, &buffer, buffer.count)
            guard count > 0 else { return }
            decoder.append(buffer[0..<count])
            while let value = try? decoder.next() {
                let command = value.elements?.compactMap(\.text) ?? []
                let index = commands.withLock { $0.append(command); return $0.count - 1 }
                if let bytes = answer(command, index) { _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
            }
        }
    }
}

/// The Redis client on a real event loop against scripted servers: pipelining, timeouts,
/// refusals, protocol errors and reconnects, each with what the caller gets.
@Suite(.serialized) struct RedisConnectionTests {
    func connection(_ port: Int, password: String? = nil, timeout: Int64 = 300) throws -> (EventLoop, RedisConnection) {
        let loop = try EventLoop()
        try loop.start(name: "redis-test")
        var limits = RedisConnection.Limits()
        limits.commandTimeout = timeout
        limits.backoffFloor = 20
        limits.backoffCeiling = 40
        let connection = RedisConnection(loop: loop, address: .init(host: "127.0.0.1", port: port, password: password), name: "test", limits: limits)
        connection.start()
        return (loop, connection)
    }

    @Test func pipelinedRepliesGoToTheirCommandsInOrder() throws {
        let server = try ScriptedRedis { command, _ in
            command.first == "ECHO" ? RESPEncoder.encode(.bulk(Array(command[1].utf8))) : RESPEncoder.encode(.simple("OK"))
        }
        let (loop, redis) = try connection(server.port)
        defer { redis.stop(); loop.stop(); loop.join() }
        let replies = Locked<[String]>([])
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            for index in 0..<100 {
                redis.send(["ECHO", "m\(index)"]) { result in
                    if case .success(let value) = result { replies.withLock { $0.append(value.text ?? "?") } }
                    if index == 99 { done.signal() }
                }
            }
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(replies.withLock { $0 } == (0..<100).map { "m\($0)" })
        #expect(server.connections.load(ordering: .relaxed) == 1)
    }

    @Test func aCommandWithoutAReplyTimesOutAndTheConnectionIsReopened() throws {
        let server = try ScriptedRedis { command, index in
            // The first GET is never answered; everything else is.
            command.first == "GET" && index < 3 ? nil : RESPEncoder.encode(.simple("OK"))
        }
        let (loop, redis) = try connection(server.port)
        defer { redis.stop(); loop.stop(); loop.join() }
        let down = Locked<[String]>([])
        loop.execute { redis.onDown = { reason in down.withLock { $0.append(reason) } } }
        #expect(redis.call(["GET", "k"]) == .failure(.timedOut))
        #expect(down.withLock { $0 } == ["a command got no reply within 300 ms"])
        // Reconnected after the backoff: the next command is answered on the new connection.
        #expect(server.accepted.wait(timeout: .now() + 5) == .success)   // the first
        #expect(server.accepted.wait(timeout: .now() + 5) == .success)   // the reconnect
        #expect(redis.call(["PING"]) == .success(.simple("OK")))
        #expect(server.connections.load(ordering: .relaxed) == 2)
    }

    @Test func bytesThatAreNotRESPCloseTheConnectionAndFailWhatWaits() throws {
        let server = try ScriptedRedis { command, index in
            command.first == "PING" && index < 3 ? Array("%3\r\n".utf8) : RESPEncoder.encode(.simple("PONG"))
        }
        let (loop, redis) = try connection(server.port)
        defer { redis.stop(); loop.stop(); loop.join() }
        let down = Locked<[String]>([])
        loop.execute { redis.onDown = { reason in down.withLock { $0.append(reason) } } }
        #expect(redis.call(["PING"]) == .failure(.unavailable("Redis sent bytes that are not RESP2: unknown type byte 0x25 (RESP3 or not Redis?)")))
        #expect(down.withLock { $0 }.first == "Redis sent bytes that are not RESP2: unknown type byte 0x25 (RESP3 or not Redis?)")
    }

    @Test func aRefusedPasswordIsReportedAndRetriedWithBackoff() throws {
        let server = try ScriptedRedis { command, _ in
            command.first == "AUTH" ? RESPEncoder.encode(.error("WRONGPASS invalid username-password pair or user is disabled.")) : RESPEncoder.encode(.simple("OK"))
        }
        let (loop, redis) = try connection(server.port, password: "nope")
        defer { redis.stop(); loop.stop(); loop.join() }
        let down = Locked<[String]>([])
        let reported = DispatchSemaphore(value: 0)
        loop.execute { redis.onDown = { reason in down.withLock { $0.append(reason) }; reported.signal() } }
        #expect(reported.wait(timeout: .now() + 5) == .success)
        #expect(down.withLock { $0 } == ["AUTH refused: WRONGPASS invalid username-password pair or user is disabled."])
        // It keeps trying (one report per outage), and commands fail at once meanwhile.
        for _ in 0..<3 { #expect(server.accepted.wait(timeout: .now() + 5) == .success) }
        #expect(down.withLock { $0.count } == 1)
        guard case .failure(.unavailable) = redis.call(["GET", "k"]) else { Issue.record("a command was answered without a session"); return }
    }

    @Test func commandsPastThePendingLimitFailAtOnce() throws {
        let server = try ScriptedRedis { command, _ in command.first == "GET" ? nil : RESPEncoder.encode(.simple("OK")) }
        let loop = try EventLoop()
        try loop.start(name: "redis-test")
        var limits = RedisConnection.Limits()
        limits.commandTimeout = 5_000
        limits.maximumPending = 3
        let redis = RedisConnection(loop: loop, address: .init(host: "127.0.0.1", port: server.port), name: "test", limits: limits)
        redis.start()
        defer { redis.stop(); loop.stop(); loop.join() }
        #expect(redis.call(["PING"]) == .success(.simple("OK")))   // connected, nothing waiting
        let results = Locked<[String]>([])
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            // Three wait for replies that never come; the fourth is refused at once.
            for index in 0..<4 {
                redis.send(["GET", "k\(index)"]) { result in
                    if case .failure(let failure) = result { results.withLock { $0.append("\(index): \(failure)") } }
                    if index == 3 { done.signal() }
                }
            }
        }
        #expect(done.wait(timeout: .now() + 2) == .success)
        #expect(results.withLock { $0 } == ["3: redis unavailable: more than 3 commands or 67108864 bytes wait for Redis"])
    }

    @Test func nothingListeningIsUnavailableNotAHang() throws {
        let (probe, port) = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        close(probe)   // the port is free now: connections are refused
        let (loop, redis) = try connection(port)
        defer { redis.stop(); loop.stop(); loop.join() }
        guard case .failure(.unavailable(let reason)) = redis.call(["PING"]) else { Issue.record("no failure"); return }
        #expect(reason.contains("127.0.0.1:\(port)"))
    }
}

extension RedisConnection {
    /// A test's round trip: sends `command` on the loop and waits on the test's own thread for
    /// the reply (at most the timeout plus a margin for the loop to run).
    func call(_ command: [String]) -> Result<RESPValue, RedisFailure> {
        let answer = Handoff<Result<RESPValue, RedisFailure>>()
        loop.execute { [self] in send(command) { answer.give($0) } }
        return answer.wait(seconds: Double(limits.commandTimeout + 500) / 1000) ?? .failure(.timedOut)
    }
}
