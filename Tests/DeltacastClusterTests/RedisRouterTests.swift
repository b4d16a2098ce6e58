import DeltacastBase
import DeltacastClient
import DeltacastConfig
import DeltacastLoop
import Dispatch
import Synchronization
import Testing
@testable import DeltacastCluster

/// Hash slots and `CLUSTER SLOTS` replies, against the numbers the Redis Cluster spec gives.
@Suite struct SlotMapTests {
    @Test func slotsAreCRC16OfTheHashTag() {
        #expect(HashSlot.crc16(Array("123456789".utf8)) == 0x31C3)   // the spec's test vector
        #expect(HashSlot.of("foo") == 12182)
        #expect(HashSlot.of("{user1000}.following") == HashSlot.of("{user1000}.followers"))
        // An empty first tag means no tag: the whole key is hashed.
        #expect(HashSlot.of("foo{}{bar}") == Int(HashSlot.crc16(Array("foo{}{bar}".utf8))) & 16383)
        #expect(HashSlot.of("foo{{bar}}zap") == HashSlot.of("{bar"))
        #expect(HashSlot.of("foo{bar}{zap}") == HashSlot.of("bar"))
    }

    @Test func everySlotHasATagThatHashesThere() {
        for slot in [0, 1, 5460, 5461, 10922, 16383] { #expect(HashSlot.of("deltacast:{\(HashSlot.tag(for: slot))}:changes-log") == slot) }
    }

    static func range(_ first: Int, _ last: Int, _ port: Int, host: String = "127.0.0.1") -> RESPValue {
        .array([.integer(Int64(first)), .integer(Int64(last)), .array([.bulk(Array(host.utf8)), .integer(Int64(port)), .bulk(Array("id".utf8))])])
    }

    @Test func aSlotsReplyBecomesTheMap() throws {
        let map = try SlotMap.parse(.array([Self.range(0, 5460, 7001), Self.range(5461, 10922, 7002), Self.range(10923, 16383, 7003, host: "")]),
                                    fallbackHost: "10.0.0.9").get()
        #expect(map.isComplete && map.primaries.count == 3)
        #expect(map.primary(of: 12182) == .init(host: "10.0.0.9", port: 7003))
        #expect(map.firstSlot(of: .init(host: "127.0.0.1", port: 7002)) == 5461)
        #expect(map.ranges(of: .init(host: "127.0.0.1", port: 7001)) == "0-5460")
    }

    @Test func aMovedSlotChangesItsPrimaryAndAnEmptiedPrimaryGoes() throws {
        var map = try SlotMap.parse(.array([Self.range(0, 0, 7001), Self.range(1, 16383, 7002)]), fallbackHost: "h").get()
        map.assign(0...0, to: .init(host: "127.0.0.1", port: 7002))
        #expect(map.primaries == [.init(host: "127.0.0.1", port: 7002)])
        map.assign(100...100, to: .init(host: "127.0.0.1", port: 7003))
        #expect(map.ranges(of: .init(host: "127.0.0.1", port: 7002)) == "0-99,101-16383")
    }

    @Test func anIncompleteMapSaysHowMuchIsCovered() throws {
        let map = try SlotMap.parse(.array([Self.range(0, 8191, 7001)]), fallbackHost: "h").get()
        #expect(!map.isComplete && map.covered == 8192 && map.primary(of: 9000) == nil)
        #expect(try SlotMap.parse(.array([]), fallbackHost: "h").get().covered == 0)
    }

    @Test(arguments: [
        (RESPValue.error("ERR This instance has cluster support disabled"), "ERR This instance has cluster support disabled"),
        (.simple("OK"), "CLUSTER SLOTS answered simple(\"OK\"), not a list of slot ranges"),
        (.array([.array([.integer(5), .integer(2), .array([.bulk(Array("h".utf8)), .integer(1)])])]),
         "CLUSTER SLOTS sent a range that is not [first, last, [host, port, ...], ...]: array(Optional([DeltacastCluster.RESPValue.integer(5), DeltacastCluster.RESPValue.integer(2), DeltacastCluster.RESPValue.array(Optional([DeltacastCluster.RESPValue.bulk(Optional([104])), DeltacastCluster.RESPValue.integer(1)]))]))"),
        (.array([.array([.integer(0), .integer(16384), .array([.bulk(Array("h".utf8)), .integer(1)])])]),
         "CLUSTER SLOTS sent a range that is not [first, last, [host, port, ...], ...]: array(Optional([DeltacastCluster.RESPValue.integer(0), DeltacastCluster.RESPValue.integer(16384), DeltacastCluster.RESPValue.array(Optional([DeltacastCluster.RESPValue.bulk(Optional([104])), DeltacastCluster.RESPValue.integer(1)]))]))"),
    ])
    func malformedSlotsRepliesAreRefusedWithTheirReason(_ reply: RESPValue, _ message: String) {
        guard case .failure(let error) = SlotMap.parse(reply, fallbackHost: "h") else { Issue.record("accepted \(reply)"); return }
        #expect(error.description == message)
    }

    @Test func redirectionsAreRead() {
        #expect(ClusterReply.parse("MOVED 3999 127.0.0.1:6381") == .moved(slot: 3999, to: .init(host: "127.0.0.1", port: 6381)))
        #expect(ClusterReply.parse("ASK 3999 [::1]:6381") == .ask(slot: 3999, to: .init(host: "::1", port: 6381)))
        #expect(ClusterReply.parse("TRYAGAIN Multiple keys request during rehashing of slot") == .retry("TRYAGAIN Multiple keys request during rehashing of slot"))
        #expect(ClusterReply.parse("CLUSTERDOWN The cluster is down") == .retry("CLUSTERDOWN The cluster is down"))
        #expect(ClusterReply.parse("ERR Script attempted to access a non local key in a cluster node script: x") != nil)
        #expect(ClusterReply.parse("MOVED 99999 h:1") == nil)
        #expect(ClusterReply.parse("MOVED x h:1") == nil)
        #expect(ClusterReply.parse("FENCED n1 does not own this topic") == nil)
    }
}

/// The router against scripted cluster nodes on loopback: what a caller gets for each
/// redirection and refusal.
@Suite(.serialized) struct RedisRouterTests {
    /// A node whose `CLUSTER SLOTS` puts every slot at the port `slotsAt` returns (0: its own),
    /// and that answers other commands with `answer`.
    static func node(slotsAt: @escaping @Sendable () -> Int, _ answer: @escaping @Sendable ([String], Int) -> RESPValue?) throws -> ScriptedRedis {
        let own = Atomic<Int>(0)
        let node = try ScriptedRedis { command, index in
            if command == ["CLUSTER", "SLOTS"] {
                let port = slotsAt()
                return RESPEncoder.encode(.array([SlotMapTests.range(0, 16383, port == 0 ? own.load(ordering: .relaxed) : port)]))
            }
            if command.first == "CLIENT" { return RESPEncoder.encode(.simple("OK")) }
            return answer(command, index).map(RESPEncoder.encode)
        }
        own.store(node.port, ordering: .relaxed)
        return node
    }

    func router(_ port: Int, timeout: Int64 = 1000) throws -> (EventLoop, RedisRouter) {
        let loop = try EventLoop()
        try loop.start(name: "router-test")
        var limits = RedisConnection.Limits()
        limits.commandTimeout = timeout
        let url = Configuration.RedisURL(host: "127.0.0.1", port: port, seeds: [.init(host: "127.0.0.1", port: port)])
        var map = SlotMap()
        map.assign(0...16383, to: .init(host: "127.0.0.1", port: port))
        let router = RedisRouter(loop: loop, address: url, name: "test", limits: limits, map: map)
        router.start()
        return (loop, router)
    }

    func call(_ router: RedisRouter, _ command: [String], key: String) -> Result<RESPValue, RedisFailure> {
        let answer = Handoff<Result<RESPValue, RedisFailure>>()
        router.loop.execute { router.send(key: key, command.map { Array($0.utf8) }) { answer.give($0) } }
        return answer.wait(seconds: 5) ?? .failure(.timedOut)
    }

    @Test func movedIsFollowedAndTheSlotRemembered() throws {
        let second = try Self.node(slotsAt: { 0 }) { command, _ in command.first == "GET" ? .bulk(Array("there".utf8)) : nil }
        let secondPort = second.port
        let first = try Self.node(slotsAt: { secondPort }) { command, _ in
            command.first == "GET" ? .error("MOVED \(HashSlot.of(command[1])) 127.0.0.1:\(secondPort)") : nil
        }
        let (loop, router) = try router(first.port)
        defer { router.stop(); loop.stop(); loop.join() }
        #expect(call(router, ["GET", "k"], key: "k") == .success(.bulk(Array("there".utf8))))
        #expect(call(router, ["GET", "k"], key: "k") == .success(.bulk(Array("there".utf8))))
        // The second GET went straight to the new primary.
        #expect(first.commands.withLock { $0.filter { $0.first == "GET" }.count } == 1)
    }

    @Test func askSendsAskingThenTheCommandOnce() throws {
        let second = try Self.node(slotsAt: { 0 }) { command, index in
            command.first == "GET" ? .bulk(Array("migrating".utf8)) : command.first == "ASKING" ? .simple("OK") : nil
        }
        let secondPort = second.port
        let first = try Self.node(slotsAt: { 0 }) { command, _ in
            command.first == "GET" ? .error("ASK \(HashSlot.of(command[1])) 127.0.0.1:\(secondPort)") : nil
        }
        let (loop, router) = try router(first.port)
        defer { router.stop(); loop.stop(); loop.join() }
        #expect(call(router, ["GET", "k"], key: "k") == .success(.bulk(Array("migrating".utf8))))
        let seen = second.commands.withLock { $0.filter { $0.first != "CLIENT" && $0.first != "CLUSTER" } }
        #expect(seen == [["ASKING"], ["GET", "k"]])
        // ASK is for one command: the next asks the first node again.
        _ = call(router, ["GET", "k"], key: "k")
        #expect(first.commands.withLock { $0.filter { $0.first == "GET" }.count } == 2)
    }

    @Test func tryAgainIsRetriedUntilItSucceeds() throws {
        let tries = Atomic<Int>(0)
        let node = try Self.node(slotsAt: { 0 }) { command, _ in
            guard command.first == "GET" else { return nil }
            return tries.add(1, ordering: .relaxed).newValue < 3 ? .error("TRYAGAIN Multiple keys request during rehashing of slot") : .bulk(Array("v".utf8))
        }
        let (loop, router) = try router(node.port)
        defer { router.stop(); loop.stop(); loop.join() }
        #expect(call(router, ["GET", "k"], key: "k") == .success(.bulk(Array("v".utf8))))
        #expect(tries.load(ordering: .relaxed) == 3)
    }

    @Test func clusterDownPastTheTimeoutIsUnavailable() throws {
        let node = try Self.node(slotsAt: { 0 }) { command, _ in command.first == "GET" ? .error("CLUSTERDOWN The cluster is down") : nil }
        let (loop, router) = try router(node.port, timeout: 400)
        defer { router.stop(); loop.stop(); loop.join() }
        #expect(call(router, ["GET", "k"], key: "k") == .failure(.unavailable("CLUSTERDOWN The cluster is down")))
    }

    @Test func commandsWaitingForARetryAreBounded() throws {
        // The three answers come in one write once all three commands arrived, so the router
        // reads them together: no retry's timer can run between them.
        let gets = Atomic<Int>(0)
        let tryAgain = RESPValue.error("TRYAGAIN Multiple keys request during rehashing of slot")
        let node = try ScriptedRedis { command, _ in
            if command == ["CLUSTER", "SLOTS"] || command.first == "CLIENT" { return RESPEncoder.encode(.simple("OK")) }
            guard command.first == "GET" else { return nil }
            let count = gets.add(1, ordering: .relaxed).newValue
            if count < 3 { return nil }
            return count == 3 ? (0..<3).flatMap { _ in RESPEncoder.encode(tryAgain) } : RESPEncoder.encode(tryAgain)
        }
        let loop = try EventLoop()
        try loop.start(name: "router-test")
        var limits = RedisConnection.Limits()
        limits.commandTimeout = 2000
        var map = SlotMap()
        map.assign(0...16383, to: .init(host: "127.0.0.1", port: node.port))
        let router = RedisRouter(loop: loop, address: .init(host: "127.0.0.1", port: node.port, seeds: [.init(host: "127.0.0.1", port: node.port)]),
                                 name: "test", limits: limits, map: map, maximumRetrying: 2)
        router.start()
        defer { router.stop(); loop.stop(); loop.join() }
        // Two wait for their retry; the third finds the bound and fails at once.
        let failures = Locked<[Int: RedisFailure]>([:])
        let third = DispatchSemaphore(value: 0)
        loop.execute {
            for index in 0..<3 {
                router.send(key: "k\(index)", [Array("GET".utf8), Array("k\(index)".utf8)]) { result in
                    if case .failure(let failure) = result { failures.withLock { $0[index] = failure } }
                    if index == 2 { third.signal() }
                }
            }
        }
        #expect(third.wait(timeout: .now() + 1) == .success)
        #expect(failures.withLock { $0 } == [2: .unavailable("more than 2 commands wait for a retry: TRYAGAIN Multiple keys request during rehashing of slot")])
    }

    @Test func endlessRedirectionsStopAfterFive() throws {
        let port = Atomic<Int>(0)
        let node = try Self.node(slotsAt: { port.load(ordering: .relaxed) }) { command, _ in
            command.first == "GET" ? .error("MOVED \(HashSlot.of(command[1])) 127.0.0.1:\(port.load(ordering: .relaxed))") : nil
        }
        port.store(node.port, ordering: .relaxed)
        let (loop, router) = try router(node.port)
        defer { router.stop(); loop.stop(); loop.join() }
        #expect(call(router, ["GET", "k"], key: "k") == .failure(.unavailable("Redis Cluster redirected the command more than 5 times: MOVED \(HashSlot.of("k")) 127.0.0.1:\(node.port)")))
    }
}
