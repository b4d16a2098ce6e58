import CSystemLinux
import DeltacastBase
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Something registered on an event loop for readiness events.
public protocol EventLoopHandler: AnyObject {
    /// Called on the loop's thread with the epoll event bits (`EPOLLIN`, `EPOLLOUT`, `EPOLLHUP`...).
    func handle(events: UInt32)
}

/// One epoll event loop, run by one thread. Cross-thread work arrives through ``execute(_:)``
/// (a queue plus an eventfd wake-up); timers are a binary heap checked between waits, so no
/// kernel timer exists per connection.
///
/// Threading: `@unchecked Sendable` because everything except `pending` (behind a `Locked`) and the
/// two file descriptors (immutable) is touched only on the loop's own thread, asserted in debug
/// builds by ``assertInLoop()``.
public final class EventLoop: @unchecked Sendable {
    private let epollFD: Int32
    private let wakeFD: Int32
    private let pending = Locked<[@Sendable () -> Void]>([])
    private var handlers: [Int32: any EventLoopHandler] = [:]
    private var timers = TimerHeap()
    private var stopping = false
    /// The thread ``start(name:)`` created, for ``join()`` (both called by the owner).
    private var joinable: pthread_t?
    /// The thread running the loop (0 before ``run()``): written by that thread, read by
    /// ``inLoop`` from any thread, hence atomic (the thread sanitizer found the plain field
    /// written by `start` and `run` at once).
    private let loopThread = Atomic<UInt>(0)
    /// A per-loop read buffer shared by every connection of this loop (64 KiB), so idle
    /// connections hold no read buffer of their own.
    public var scratch = [UInt8](repeating: 0, count: 64 * 1024)

    /// Creates the loop's epoll instance and wake-up eventfd.
    public init() throws(SystemError) {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw SystemError("epoll_create1") }
        let wake = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wake >= 0 else { close(epoll); throw SystemError("eventfd") }
        epollFD = epoll
        wakeFD = wake
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wake
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0 else { throw SystemError("epoll_ctl(ADD eventfd)") }
    }

    deinit {
        close(wakeFD)
        close(epollFD)
    }

    /// Event bits for ``register(_:events:handler:)`` and ``EventLoopHandler/handle(events:)``,
    /// for modules that do not import the epoll headers.
    public static let readable = EPOLLIN.rawValue
    /// Writable (`EPOLLOUT`).
    public static let writable = EPOLLOUT.rawValue
    /// Error or hang-up (`EPOLLERR | EPOLLHUP`).
    public static let failed = EPOLLERR.rawValue | EPOLLHUP.rawValue

    /// Whether the caller runs on this loop's thread.
    public var inLoop: Bool {
        let thread = loopThread.load(ordering: .acquiring)
        return thread != 0 && pthread_equal(pthread_t(thread), pthread_self()) != 0
    }

    /// Traps in debug builds when called off the loop's thread.
    @inline(__always)
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(loopThread.load(ordering: .acquiring) == 0 || inLoop, "called off its event loop", file: file, line: line)
    }

    /// Runs `task` on the loop's thread soon; callable from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        pending.withLock { $0.append(task) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Registers `fd` for `events` (edge-triggered when `EPOLLET` is included).
    public func register(_ fd: Int32, events: UInt32, handler: any EventLoopHandler) throws(SystemError) {
        assertInLoop()
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else { throw SystemError("epoll_ctl(ADD)") }
        handlers[fd] = handler
    }

    /// Changes the events `fd` is registered for.
    public func modify(_ fd: Int32, events: UInt32) throws(SystemError) {
        assertInLoop()
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        guard epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) == 0 else { throw SystemError("epoll_ctl(MOD)") }
    }

    /// Stops watching `fd` (the caller closes it).
    public func deregister(_ fd: Int32) {
        assertInLoop()
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        handlers[fd] = nil
    }

    /// The number of registered descriptors (tests and metrics).
    public var registeredCount: Int { handlers.count }

    /// Runs `callback` on the loop after `milliseconds`; returns an id for ``cancelTimer(_:)``.
    @discardableResult
    public func schedule(afterMilliseconds milliseconds: Int64, _ callback: @escaping () -> Void) -> UInt64 {
        schedule(atMilliseconds: MonotonicClock.milliseconds() + milliseconds, callback)
    }

    /// Runs `callback` on the loop at `deadline` (``MonotonicClock`` milliseconds; a past one
    /// fires at the next iteration). Returns an id for ``cancelTimer(_:)``.
    @discardableResult
    public func schedule(atMilliseconds deadline: Int64, _ callback: @escaping () -> Void) -> UInt64 {
        assertInLoop()
        return timers.insert(deadline: deadline, callback)
    }

    /// Cancels a timer that has not fired.
    public func cancelTimer(_ id: UInt64) { timers.cancel(id) }

    /// Starts a thread that runs the loop until ``stop()``.
    public func start(name: String) throws(SystemError) {
        let box = Unmanaged.passRetained(self)
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { argument in
            let loop = Unmanaged<EventLoop>.fromOpaque(argument!).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
        guard result == 0 else { box.release(); throw SystemError("pthread_create", errno: result) }
        joinable = handle
        _ = name
    }

    /// Asks the loop to finish its current iteration and return from ``run()``.
    public func stop() { execute { [unowned self] in self.stopping = true } }

    /// Waits for the loop's thread to end (after ``stop()``).
    public func join() {
        if let joinable { pthread_join(joinable, nil) }
    }

    /// Runs the loop on the calling thread until ``stop()``.
    public func run() {
        loopThread.store(UInt(pthread_self()), ordering: .releasing)
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        while !stopping {
            let timeout = timers.nextDeadline().map { Int32(clamping: max(0, $0 - MonotonicClock.milliseconds())) } ?? 1000
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, Int32($0.count), timeout) }
            if count < 0 && errno != EINTR { preconditionFailure("\(SystemError("epoll_wait"))") }
            for index in 0..<max(0, Int(count)) {
                let fd = events[index].data.fd
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                    continue
                }
                handlers[fd]?.handle(events: events[index].events)
            }
            runPending()
            for callback in timers.popDue(now: MonotonicClock.milliseconds()) { callback.run() }
        }
        runPending()
        // Nothing registered can run again: let go of the handlers and timers, so one that
        // holds its loop (a listener, a connection) is released with it rather than leaked.
        handlers.removeAll()
        timers = TimerHeap()
    }

    /// The batch being run (loop thread only). Swapped with `pending` under the lock, so both
    /// buffers keep their capacity: copying the queue out and emptying it in place made the
    /// shared buffer copy-on-write, one allocation per batch.
    private var running: [@Sendable () -> Void] = []

    private func runPending() {
        while true {
            pending.withLock { swap(&$0, &running) }
            if running.isEmpty { return }
            for index in running.indices { running[index]() }
            running.removeAll(keepingCapacity: true)
        }
    }
}

/// Timers ordered by deadline (a binary min-heap); cancellation is lazy.
struct TimerHeap {
    /// A timer's callback. The struct keeps the closure at its own abstraction: a bare
    /// `() -> Void` stored in a dictionary is wrapped in a reabstraction thunk, one allocation
    /// per timer (a held long-poll sets one per request).
    struct Callback {
        let run: () -> Void
    }

    private var entries: [(deadline: Int64, id: UInt64)] = []
    private var callbacks: [UInt64: Callback] = [:]
    private var nextID: UInt64 = 1

    mutating func nextDeadline() -> Int64? {
        while let first = entries.first, callbacks[first.id] == nil { popFirst() }
        return entries.first?.deadline
    }

    mutating func insert(deadline: Int64, _ callback: @escaping () -> Void) -> UInt64 {
        let id = nextID
        nextID += 1
        callbacks[id] = Callback(run: callback)
        entries.append((deadline, id))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
        return id
    }

    /// Entries held, cancelled ones included (for the bound's test).
    var entryCount: Int { entries.count }

    /// Cancels a timer. Its entry stays in the heap until it surfaces, unless cancelled entries
    /// outnumber live ones: then the heap is rebuilt from the live ones. A held long-poll
    /// answered at once leaves an entry for its whole wait (25 s by default), so without the
    /// rebuild the heap would hold every poll of the last `max_wait`, not only those held now.
    mutating func cancel(_ id: UInt64) {
        guard callbacks.removeValue(forKey: id) != nil else { return }
        if entries.count > 2 * callbacks.count + 64 { rebuild() }
    }

    /// Keeps the live entries and restores the heap order (Floyd's bottom-up build, O(n)).
    private mutating func rebuild() {
        entries.removeAll { callbacks[$0.id] == nil }
        var parent = entries.count / 2 - 1
        while parent >= 0 {
            siftDown(from: parent)
            parent -= 1
        }
    }

    /// Removes and returns the callbacks due at `now`, in deadline order. The caller runs them
    /// after this mutation has ended, so a callback may schedule or cancel timers.
    mutating func popDue(now: Int64) -> [Callback] {
        var due: [Callback] = []
        while let first = entries.first, first.deadline <= now {
            popFirst()
            if let callback = callbacks.removeValue(forKey: first.id) { due.append(callback) }
        }
        return due
    }

    private mutating func popFirst() {
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        siftDown(from: 0)
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < entries.count && entries[left].deadline < entries[smallest].deadline { smallest = left }
            if right < entries.count && entries[right].deadline < entries[smallest].deadline { smallest = right }
            if smallest == parent { return }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
