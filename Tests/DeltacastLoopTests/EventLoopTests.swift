import DeltacastBase
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import DeltacastLoop

/// Accepts connections and echoes every byte back through an OutboundQueue.
/// `@unchecked Sendable`: created on the test thread, then touched only on its loop.
final class EchoListener: EventLoopHandler, @unchecked Sendable {
    let loop: EventLoop
    let fd: Int32
    var connections: [Int32: EchoConnection] = [:]
    init(loop: EventLoop, fd: Int32) { self.loop = loop; self.fd = fd }
    func handle(events: UInt32) {
        while let (client, _) = try! Socket.accept(fd) {
            let connection = EchoConnection(loop: loop, fd: client, owner: self)
            connections[client] = connection
            try! loop.register(client, events: EPOLLIN_ET, handler: connection)
        }
    }
}

let EPOLLIN_ET: UInt32 = 0x001 | 0x8000_0000  // EPOLLIN | EPOLLET
let EPOLLOUT_ET: UInt32 = 0x004 | 0x8000_0000

final class EchoConnection: EventLoopHandler {
    let loop: EventLoop
    let fd: Int32
    unowned let owner: EchoListener
    var queue = OutboundQueue(highWatermark: 64 * 1024, lowWatermark: 16 * 1024, hardLimit: 1 << 20)
    init(loop: EventLoop, fd: Int32, owner: EchoListener) { self.loop = loop; self.fd = fd; self.owner = owner }
    /// Reads until EAGAIN or until the queue passes its high watermark (backpressure: the
    /// kernel buffers fill and the sender slows), flushes, and resumes reading once drained.
    func handle(events: UInt32) {
        while true {
            var pausedForBackpressure = false
            while true {
                if queue.isAboveHighWatermark { pausedForBackpressure = true; break }
                let count = loop.scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    precondition(queue.enqueue(Array(loop.scratch[0..<count])), "hard limit reached despite backpressure")
                    continue
                }
                if count < 0 && errno == EINTR { continue }
                if count < 0 && errno == EAGAIN { break }
                finish()
                return
            }
            switch queue.flush(to: fd) {
            case .drained:
                try? loop.modify(fd, events: EPOLLIN_ET)
                if pausedForBackpressure { continue }  // unread bytes may wait: no new edge will come
                return
            case .wouldBlock:
                try? loop.modify(fd, events: EPOLLIN_ET | EPOLLOUT_ET)
                return
            case .failed:
                finish()
                return
            }
        }
    }
    func finish() {
        loop.deregister(fd)
        close(fd)
        owner.connections[fd] = nil
    }
}

/// A blocking loopback client socket.
func connectLoopback(port: Int) throws -> Int32 { try Socket.connect(port: port) }

func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while result.count < count {
        let n = read(fd, &buffer, min(buffer.count, count - result.count))
        if n <= 0 { break }
        result += buffer[0..<n]
    }
    return result
}

@Suite(.serialized) struct EventLoopTests {
    @Test func executeRunsTasksOnTheLoopThreadInOrder() throws {
        let loop = try EventLoop()
        try loop.start(name: "test")
        let done = DispatchSemaphore(value: 0)
        let log = Locked<[Int]>([])
        for index in 0..<1000 {
            loop.execute {
                precondition(loop.inLoop)
                log.withLock { $0.append(index) }
                if index == 999 { done.signal() }
            }
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(log.withLock { $0 } == Array(0..<1000))
        loop.stop()
        loop.join()
    }

    @Test func timersFireByDeadlineAndCancelledOnesDoNot() throws {
        let loop = try EventLoop()
        try loop.start(name: "test")
        let done = DispatchSemaphore(value: 0)
        let fired = Locked<[String]>([])
        loop.execute {
            loop.schedule(afterMilliseconds: 30) { fired.withLock { $0.append("c") }; done.signal() }
            loop.schedule(afterMilliseconds: 10) { fired.withLock { $0.append("b") } }
            loop.schedule(afterMilliseconds: 0) { fired.withLock { $0.append("a") } }
            let cancelled = loop.schedule(afterMilliseconds: 5) { fired.withLock { $0.append("cancelled") } }
            loop.cancelTimer(cancelled)
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(fired.withLock { $0 } == ["a", "b", "c"])
        loop.stop()
        loop.join()
    }

    /// A timer callback may schedule the next timer (as the server's deadline sweep does).
    @Test func timerCallbacksMayScheduleTimers() throws {
        let loop = try EventLoop()
        try loop.start(name: "test")
        let done = DispatchSemaphore(value: 0)
        let count = Locked<Int>(0)
        @Sendable func tick() {
            loop.schedule(afterMilliseconds: 1) {
                if count.withLock({ $0 += 1; return $0 }) == 20 { done.signal() } else { tick() }
            }
        }
        loop.execute { tick() }
        #expect(done.wait(timeout: .now() + 10) == .success)
        loop.stop()
        loop.join()
    }

    @Test func echoOverLoopbackWithManyConnections() throws {
        let loop = try EventLoop()
        let (listenFD, port) = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: true)
        let listener = EchoListener(loop: loop, fd: listenFD)
        let registered = DispatchSemaphore(value: 0)
        try loop.start(name: "echo")
        loop.execute { try! loop.register(listenFD, events: EPOLLIN_ET, handler: listener); registered.signal() }
        registered.wait()
        var clients: [Int32] = []
        for _ in 0..<200 { clients.append(try connectLoopback(port: port)) }
        for (index, client) in clients.enumerated() {
            let message = Array("hello \(index) ".utf8) + [UInt8](repeating: UInt8(index % 256), count: 3000)
            #expect(message.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == message.count)
            let echoed = readExactly(client, message.count)
            #expect(echoed == message, "echo \(index) differs")
        }
        // A large message crosses many reads and writes, and still comes back whole.
        let big = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let first = clients[0]
        let writer = Thread { _ = big.withUnsafeBytes { send(first, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        writer.start()
        let echoed = readExactly(first, big.count)
        #expect(echoed.count == big.count)
        let same = echoed == big  // compared as a Bool: a failure diff of 2 MiB would take minutes
        #expect(same, "echoed bytes differ")
        for client in clients { close(client) }
        loop.stop()
        loop.join()
        close(listenFD)
    }

    @Test func listenerErrorsNameTheCall() {
        #expect(throws: SystemError("inet_pton(not-an-address)", errno: EINVAL)) {
            _ = try Socket.listen(host: "not-an-address", port: 0, reusePort: false)
        }
        #expect(SystemError("bind(127.0.0.1:80)", errno: EADDRINUSE).description == "bind(127.0.0.1:80): Address already in use (errno 98)")
    }
}

@Suite struct OutboundQueueTests {
    @Test func hardLimitRefusesAndWouldBlockKeepsBytesBounded() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        var queue = OutboundQueue(highWatermark: 256 * 1024, lowWatermark: 64 * 1024, hardLimit: 1 << 20)
        let chunk = [UInt8](repeating: 0x61, count: 100 * 1024)
        var accepted = 0
        while queue.enqueue(chunk) { accepted += 1 }
        #expect(accepted == 10)                  // 10 × 100 KiB fit under 1 MiB, the 11th does not
        #expect(queue.pendingBytes == 10 * chunk.count)
        #expect(queue.isAboveHighWatermark)
        #expect(!queue.isBelowLowWatermark)
        // The peer reads nothing: the socket fills and the queue keeps the rest, never more.
        #expect(queue.flush(to: pair[0]) == .wouldBlock)
        #expect(queue.pendingBytes > 0 && queue.pendingBytes < 10 * chunk.count)
        // The peer drains: everything arrives, in order.
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while received < 10 * chunk.count {
            let n = read(pair[1], &buffer, buffer.count)
            if n > 0 { received += n; precondition(buffer[0..<n].allSatisfy { $0 == 0x61 }) }
            if queue.flush(to: pair[0]) == .drained && n <= 0 { if received == 10 * chunk.count { break } }
        }
        #expect(received == 10 * chunk.count)
        #expect(queue.isEmpty)
        #expect(queue.isBelowLowWatermark)
    }

    /// Buffers of different sizes, written a few bytes at a time (a TLS session that takes
    /// what it can, or would block), come out whole and in order, including across a queue
    /// that drains and fills again: the first buffer is held apart from the others.
    @Test func partialWritesKeepEveryByteInOrder() {
        var queue = OutboundQueue(highWatermark: 1 << 20, lowWatermark: 1, hardLimit: 1 << 20)
        var scratch = [UInt8](repeating: 0, count: 64)
        var expected: [UInt8] = [], written: [UInt8] = []
        var generator = SystemRandomNumberGenerator()
        var turn = 0
        func write(_ bytes: UnsafeRawBufferPointer) -> Int {
            turn += 1
            if turn % 5 == 0 { return -1 }   // would block
            let taken = min(bytes.count, Int.random(in: 1...100, using: &generator))
            written += bytes[0..<taken]
            return taken
        }
        for round in 0..<20 {
            for index in 0..<(round % 4 + 1) {
                let buffer = (0..<(1 + (round * 7 + index * 13) % 150)).map { UInt8(truncatingIfNeeded: $0 &+ round &* 31 &+ index) }
                let taken = queue.enqueue(buffer)
                #expect(taken)
                expected += buffer
            }
            while queue.flush(scratch: &scratch, write: write) != .drained {}
            #expect(queue.isEmpty)
        }
        #expect(written == expected)
    }

    @Test func anEmptyQueueTakesOneBufferLargerThanTheLimitButNothingAfterIt() {
        var queue = OutboundQueue(highWatermark: 10, lowWatermark: 1, hardLimit: 100)
        let big = queue.enqueue([UInt8](repeating: 1, count: 500))   // a document bigger than the limit
        let more = queue.enqueue([2])                                 // nothing more until it drains
        #expect(big && !more)
        #expect(queue.pendingBytes == 500)
    }

    @Test func writingToAClosedPeerFails() {
        var pair: [Int32] = [0, 0]
        _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair)
        close(pair[1])
        _ = Socket.ignoreSIGPIPE
        var queue = OutboundQueue(highWatermark: 10, lowWatermark: 1, hardLimit: 100)
        _ = queue.enqueue([1, 2, 3])
        #expect(queue.flush(to: pair[0]) == .failed(EPIPE))
        close(pair[0])
    }
}

/// The loop's timers (held long-polls, status ticks, sweeps) on explicit times.
@Suite struct TimerHeapTests {
    @Test func timersFireInDeadlineOrderAndACancelledOneNever() {
        var heap = TimerHeap()
        let fired = Locked<[String]>([])
        _ = heap.insert(deadline: 3_000) { fired.withLock { $0.append("hold 3 s") } }
        let cancelled = heap.insert(deadline: 1_000) { fired.withLock { $0.append("answered hold") } }
        _ = heap.insert(deadline: 2_000) { fired.withLock { $0.append("sweep") } }
        heap.cancel(cancelled)   // the held request was answered by a change first
        #expect(heap.nextDeadline() == 2_000)
        #expect(heap.popDue(now: 1_999).isEmpty)
        for callback in heap.popDue(now: 5_000) { callback.run() }
        #expect(fired.withLock { $0 } == ["sweep", "hold 3 s"])
        #expect(heap.nextDeadline() == nil)
    }

    /// Held polls answered at once cancel their timers; the heap keeps at most twice the live
    /// timers (plus 64), and the live ones still fire in order.
    @Test func cancelledEntriesAreDroppedOnceTheyOutnumberLiveOnes() {
        var heap = TimerHeap()
        let fired = Locked<[Int64]>([])
        var live: [Int64] = []
        for round in 0..<10_000 {
            let deadline = Int64(25_000 + round)
            let id = heap.insert(deadline: deadline) { fired.withLock { $0.append(deadline) } }
            if round % 100 == 0 { live.append(deadline) } else { heap.cancel(id) }
            #expect(heap.entryCount <= 2 * live.count + 64 + 1)
        }
        #expect(heap.entryCount < 300)
        for callback in heap.popDue(now: 40_000) { callback.run() }
        #expect(fired.withLock { $0 } == live)
        #expect(heap.nextDeadline() == nil)
    }
}
