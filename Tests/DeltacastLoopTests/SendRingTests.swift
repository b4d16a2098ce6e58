import Foundation
import Testing
@testable import DeltacastLoop

/// Non-blocking stream socket pairs: (writer, reader).
func socketPairs(_ count: Int) -> [(writer: Int32, reader: Int32)] {
    (0..<count).map { _ in
        var pair: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        return (pair[0], pair[1])
    }
}

/// Everything a socket holds now.
func drain(_ fd: Int32) -> [UInt8] {
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { return received }
        received += buffer[0..<count]
    }
}

/// Whether this kernel lets a process set up an io_uring (a container's seccomp profile may not).
let ioUringAllowed = (try? SendRing(capacity: 2)) != nil

/// The ring as the loops use it: many connections' queues in one system call. Where the kernel
/// refuses io_uring the loops send one sendmsg per connection, which every other suite covers
/// (and `SendRingSetupTests` checks the refusal is an error, not a crash).
@Suite(.enabled(if: ioUringAllowed, "this kernel refuses io_uring: the loops use sendmsg")) struct SendRingTests {
    func queue(_ buffers: [[UInt8]]) -> OutboundQueue {
        var queue = OutboundQueue(highWatermark: 1 << 20, lowWatermark: 1, hardLimit: 1 << 24)
        for buffer in buffers { precondition(queue.enqueue(buffer)) }
        return queue
    }

    @Test func manyQueuesOfSeveralBuffersArriveWholeAndInOrder() throws {
        let ring = try SendRing(capacity: 8)
        let pairs = socketPairs(30)   // more queues than the ring holds: four system calls
        defer { for pair in pairs { close(pair.writer); close(pair.reader) } }
        var expected: [[UInt8]] = []
        var queues: [(fd: Int32, queue: OutboundQueue)] = []
        for (index, pair) in pairs.enumerated() {
            let buffers = (0..<(1 + index % 5)).map { part in [UInt8]("queue \(index) part \(part);".utf8) }
            expected.append(buffers.flatMap { $0 })
            queues.append((pair.writer, queue(buffers)))
        }
        let results = ring.sendPending(queues)
        #expect(results.map(Int.init) == expected.map(\.count))
        for (index, pair) in pairs.enumerated() { #expect(drain(pair.reader) == expected[index]) }
        #expect(!ring.isBroken)
    }

    /// A full socket gets `-EAGAIN` and keeps its bytes for the flush that follows; a closed
    /// peer gets `-EPIPE` (and no SIGPIPE); neither disturbs the others in the batch.
    @Test func aFullSocketWouldBlockAndAClosedPeerFailsAloneInTheirBatch() throws {
        let ring = try SendRing(capacity: 4)
        let pairs = socketPairs(3)
        defer { for pair in pairs { close(pair.writer); close(pair.reader) } }
        // Fill the first socket.
        var filler = queue([[UInt8](repeating: 0x66, count: 4 << 20)])
        #expect(filler.flush(to: pairs[0].writer) == .wouldBlock)
        close(pairs[2].reader)
        let results = ring.sendPending([(pairs[0].writer, queue([[1, 2, 3]])), (pairs[1].writer, queue([[4, 5]])), (pairs[2].writer, queue([[6]]))])
        #expect(results == [-EAGAIN, 2, -EPIPE])
        #expect(drain(pairs[1].reader) == [4, 5])
    }

    /// A batch pins each queue's buffers on the stack; past 1,024 buffers it takes another
    /// system call rather than a deeper stack.
    @Test func aBatchPastOneThousandTwentyFourBuffersIsSplit() throws {
        let ring = try SendRing(capacity: 64)
        let pairs = socketPairs(40)
        defer { for pair in pairs { close(pair.writer); close(pair.reader) } }
        let buffers = (0..<60).map { [UInt8(truncatingIfNeeded: $0)] }   // 40 × 60 buffers, 64 per sendmsg at most
        let results = ring.sendPending(pairs.map { ($0.writer, queue(buffers)) })
        #expect(results.allSatisfy { $0 == 60 })
        for pair in pairs { #expect(drain(pair.reader) == buffers.flatMap { $0 }) }
    }

    @Test func aQueueAdvancesByWhatTheRingSent() throws {
        let ring = try SendRing(capacity: 4)
        let pairs = socketPairs(1)
        defer { close(pairs[0].writer); close(pairs[0].reader) }
        var pending = queue([[1, 2], [3]])
        let results = ring.sendPending([(pairs[0].writer, pending)])
        pending.advance(by: Int(results[0]))
        #expect(pending.isEmpty)
        #expect(drain(pairs[0].reader) == [1, 2, 3])
    }

}

@Suite struct SendRingSetupTests {
    @Test func aRingThatCannotBeSetUpThrows() {
        #expect(throws: SystemError.self) { try SendRing(capacity: 1 << 20) }   // past IORING_MAX_ENTRIES
    }
}
