#if canImport(Glibc)
import Glibc
#endif
import CSystemLinux

/// An io_uring used as a batched `sendmsg`: many sockets' sends in one system call.
///
/// Each send carries `MSG_DONTWAIT`, so it completes during the submission, as a plain
/// non-blocking `sendmsg` would: bytes written, or `-EAGAIN` when the socket is full (then the
/// caller waits for `EPOLLOUT` as usual). ``send(_:count:)`` waits for every completion before
/// it returns, so the buffers it was given need to stay valid only for the call. One ring
/// belongs to one event loop: the thread that makes it is the only one that may use it.
///
/// ```
///  shared with the kernel (mmap)          ours
///  SQ ring: head tail mask array[]        sqes[entries]     one per send: fd, msghdr, tag
///  CQ ring: head tail mask cqes[]                           res = bytes or -errno, tag
/// ```
public final class SendRing {
    /// Sends per system call at most (the ring's submission entries).
    public let capacity: Int
    private let ring: Int32
    private let sqHead: UnsafeMutablePointer<UInt32>
    private let sqTail: UnsafeMutablePointer<UInt32>
    private let sqMask: UInt32
    private let sqArray: UnsafeMutablePointer<UInt32>
    private let entries: UnsafeMutablePointer<io_uring_sqe>
    private let cqHead: UnsafeMutablePointer<UInt32>
    private let cqTail: UnsafeMutablePointer<UInt32>
    private let cqMask: UInt32
    private let completions: UnsafeMutablePointer<io_uring_cqe>
    private let maps: [(UnsafeMutableRawPointer, Int)]
    /// Set when `io_uring_enter` failed: the ring sends nothing more, and its owner goes back
    /// to one `sendmsg` per connection.
    public private(set) var isBroken = false

    /// Sets up a ring of `capacity` entries (a power of two).
    ///
    /// - Throws: ``SystemError`` when the kernel has no io_uring or refuses it (a seccomp
    ///   profile, `kernel.io_uring_disabled`): the caller sends one `sendmsg` at a time.
    public init(capacity: Int = 256) throws(SystemError) {
        // One thread submits (the loop that made the ring), and the kernel's deferred work runs
        // only when it asks for completions: nothing interrupts its epoll_wait (Linux 6.1;
        // earlier kernels refuse the flags, and get a plain ring).
        var parameters = io_uring_params()
        parameters.flags = UInt32(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)
        var fd = deltacast_io_uring_setup(UInt32(capacity), &parameters)
        if fd < 0 && errno == EINVAL {
            parameters = io_uring_params()
            fd = deltacast_io_uring_setup(UInt32(capacity), &parameters)
        }
        guard fd >= 0 else { throw SystemError("io_uring_setup") }
        guard parameters.features & UInt32(IORING_FEAT_SINGLE_MMAP) != 0 else {
            close(fd)
            throw SystemError("io_uring_setup (no IORING_FEAT_SINGLE_MMAP)", errno: ENOSYS)
        }
        let ringBytes = max(Int(parameters.sq_off.array) + Int(parameters.sq_entries) * 4,
                            Int(parameters.cq_off.cqes) + Int(parameters.cq_entries) * MemoryLayout<io_uring_cqe>.stride)
        let ringMap = mmap(nil, ringBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off_t(IORING_OFF_SQ_RING))
        guard let ringMap, ringMap != MAP_FAILED else { close(fd); throw SystemError("mmap(io_uring rings)") }
        let entryBytes = Int(parameters.sq_entries) * MemoryLayout<io_uring_sqe>.stride
        let entryMap = mmap(nil, entryBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off_t(IORING_OFF_SQES))
        guard let entryMap, entryMap != MAP_FAILED else {
            munmap(ringMap, ringBytes)
            close(fd)
            throw SystemError("mmap(io_uring entries)")
        }
        func field(_ offset: UInt32) -> UnsafeMutablePointer<UInt32> { (ringMap + Int(offset)).assumingMemoryBound(to: UInt32.self) }
        ring = fd
        self.capacity = Int(parameters.sq_entries)
        sqHead = field(parameters.sq_off.head)
        sqTail = field(parameters.sq_off.tail)
        sqMask = field(parameters.sq_off.ring_mask).pointee
        sqArray = field(parameters.sq_off.array)
        entries = entryMap.assumingMemoryBound(to: io_uring_sqe.self)
        cqHead = field(parameters.cq_off.head)
        cqTail = field(parameters.cq_off.tail)
        cqMask = field(parameters.cq_off.ring_mask).pointee
        completions = (ringMap + Int(parameters.cq_off.cqes)).assumingMemoryBound(to: io_uring_cqe.self)
        maps = [(ringMap, ringBytes), (entryMap, entryBytes)]
    }

    deinit {
        for (address, length) in maps { munmap(address, length) }
        close(ring)
    }

    /// Sends `messages[i]` on `fds[i]` for every i below `count` (at most ``capacity``), each
    /// with `MSG_NOSIGNAL | MSG_DONTWAIT`, and writes each result to `results[i]`: the bytes
    /// sent, or a negated errno. Returns when every send has completed.
    ///
    /// - Throws: ``SystemError`` when `io_uring_enter` itself fails (not a send): nothing is
    ///   left in flight, and the caller sends those messages itself.
    func send(fds: UnsafePointer<Int32>, messages: UnsafePointer<msghdr>, results: UnsafeMutablePointer<Int32>, count: Int) throws(SystemError) {
        precondition(count <= capacity, "a batch larger than the ring")
        guard count > 0 else { return }
        var tail = sqTail.pointee
        for index in 0..<count {
            let slot = tail & sqMask
            deltacast_io_uring_prep_sendmsg(entries + Int(slot), fds[index], messages + index,
                                            UInt32(MSG_NOSIGNAL | MSG_DONTWAIT), UInt64(index))
            sqArray[Int(slot)] = slot
            tail &+= 1
        }
        deltacast_store_release(sqTail, tail)
        var submitted = 0
        var completed = 0
        while completed < count {
            let result = deltacast_io_uring_enter(ring, UInt32(count - submitted), UInt32(count - completed), UInt32(IORING_ENTER_GETEVENTS))
            if result < 0 {
                let error = errno
                if error == EINTR || error == EAGAIN || error == EBUSY { reap(results, &completed); continue }
                // The entries not taken are withdrawn; those taken completed (we waited for them).
                if submitted == 0 && completed == 0 { deltacast_store_release(sqTail, tail &- UInt32(count)) }
                throw SystemError("io_uring_enter", errno: error)
            }
            submitted += Int(result)
            reap(results, &completed)
        }
    }

    /// Sends what each queue holds (up to 64 buffers of each), ``capacity`` queues per system
    /// call, and returns each send's result in order: bytes sent (the caller advances that
    /// queue by them) or a negated errno (`-EAGAIN`: the socket is full). The queues are
    /// copies, which keep their buffers alive while the kernel reads them. A queue the ring
    /// did not send (it failed; see ``isBroken``) gets 0: the caller sends it itself.
    public func sendPending(_ queues: [(fd: Int32, queue: OutboundQueue)]) -> [Int32] {
        var results = [Int32](repeating: 0, count: queues.count)
        var start = 0
        while start < queues.count && !isBroken {
            // A batch: at most `capacity` queues, and at most 1,024 buffers (each pinned by a
            // level of recursion on this thread's stack).
            var end = start
            var buffers = 0
            while end < queues.count && end - start < capacity && buffers + queues[end].queue.bufferCount <= 1024 {
                buffers += queues[end].queue.bufferCount
                end += 1
            }
            if end == start { end += 1 }
            let count = end - start
            let failed = withUnsafeTemporaryAllocation(of: Int32.self, capacity: count) { fds in
                withUnsafeTemporaryAllocation(of: msghdr.self, capacity: count) { messages in
                    results.withUnsafeMutableBufferPointer { results in
                        func pinned(_ index: Int) -> Bool {
                            if index == count {
                                do {
                                    try send(fds: fds.baseAddress!, messages: messages.baseAddress!, results: results.baseAddress! + start, count: count)
                                    return false
                                } catch {
                                    return true
                                }
                            }
                            fds[index] = queues[start + index].fd
                            return queues[start + index].queue.withPendingMessage { message in
                                messages[index] = message
                                return pinned(index + 1)
                            }
                        }
                        return pinned(0)
                    }
                }
            }
            if failed { isBroken = true }
            start = end
        }
        return results
    }

    private func reap(_ results: UnsafeMutablePointer<Int32>, _ completed: inout Int) {
        var head = cqHead.pointee
        let tail = deltacast_load_acquire(cqTail)
        while head != tail {
            let completion = completions[Int(head & cqMask)]
            results[Int(completion.user_data)] = completion.res
            head &+= 1
            completed += 1
        }
        deltacast_store_release(cqHead, head)
    }
}
