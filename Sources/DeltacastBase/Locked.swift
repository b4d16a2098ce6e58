#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a pthread mutex: every lock in the proxy. `Synchronization.Mutex` would do the
/// same job, but on Linux it waits on a futex the thread sanitizer cannot see, so every access
/// it guarded would be reported as a race and real races would drown. TSan intercepts pthread
/// mutexes, so `--sanitize=thread` reports only what is real.
/// Uncontended, either costs an atomic operation or two.
public final class Locked<Value>: @unchecked Sendable {
    fileprivate let mutex: UnsafeMutablePointer<pthread_mutex_t>
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

extension Locked where Value == Void {
    /// A lock that guards state kept elsewhere (a `Topic`'s fields). The empty value is never
    /// touched in place: a zero-sized stored property's address can alias the next allocation,
    /// which the thread sanitizer then reports as a race between unrelated locks.
    @inline(__always)
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        var unit: Void = ()
        return try body(&unit)
    }
}
