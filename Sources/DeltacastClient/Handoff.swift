import DeltacastBase
import Dispatch

/// A value that one thread hands to another, which blocks until it arrives: how a command, a
/// test or the client library's own thread waits for work done elsewhere (on an event loop, in
/// a task). It lives in the client library, as package API, because an event loop never waits:
/// no server-side target may import `DeltacastClient` (`.ci/layers`), so none can block on one.
/// A loop's work hands its reply back to the loop instead.
package final class Handoff<Value: Sendable>: Sendable {
    private let slot = Locked<Value?>(nil)
    private let arrived = DispatchSemaphore(value: 0)

    package init() {}

    /// Hands `value` over; only the first value given counts. Callable from any thread.
    package func give(_ value: Value) {
        let first = slot.withLock { held -> Bool in
            guard held == nil else { return false }
            held = value
            return true
        }
        if first { arrived.signal() }
    }

    /// Whether a value was given.
    package var isGiven: Bool { slot.withLock { $0 != nil } }

    /// Blocks until a value is given, at most `seconds` (nil: without limit); nil when none
    /// came in time. Once one was given, every wait returns it at once.
    package func wait(seconds: Double? = nil) -> Value? {
        if let seconds {
            guard arrived.wait(timeout: .now() + seconds) == .success else { return nil }
        } else {
            arrived.wait()
        }
        arrived.signal()
        return slot.withLock { $0 }
    }
}
