import Dispatch

/// A value that one thread hands to another, which blocks until it arrives: how a command, a
/// test or the client library's own thread waits for work done elsewhere (on an event loop, in
/// a task). Never waited for on an event loop, which must not block.
public final class Handoff<Value: Sendable>: Sendable {
    private let slot = Locked<Value?>(nil)
    private let arrived = DispatchSemaphore(value: 0)

    public init() {}

    /// Hands `value` over; only the first value given counts. Callable from any thread.
    public func give(_ value: Value) {
        let first = slot.withLock { held -> Bool in
            guard held == nil else { return false }
            held = value
            return true
        }
        if first { arrived.signal() }
    }

    /// Whether a value was given.
    public var isGiven: Bool { slot.withLock { $0 != nil } }

    /// Blocks until a value is given, at most `seconds` (nil: without limit); nil when none
    /// came in time. Once one was given, every wait returns it at once.
    public func wait(seconds: Double? = nil) -> Value? {
        if let seconds {
            guard arrived.wait(timeout: .now() + seconds) == .success else { return nil }
        } else {
            arrived.wait()
        }
        arrived.signal()
        return slot.withLock { $0 }
    }
}
