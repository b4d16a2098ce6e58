#if canImport(Glibc)
import Glibc
#endif

/// A value behind a pthread mutex: every lock in the proxy. `Synchronization.Mutex` would do the
/// same job, but on Linux it waits on a futex the thread sanitizer cannot see, so every access
/// it guarded was reported as a race and real races drowned (issue 19's TSan pass). TSan
/// intercepts pthread mutexes, so `--sanitize=thread` now reports only what is real.
/// Uncontended, either costs an atomic operation or two.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// A lock around `value`.
    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    @inline(__always)
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
