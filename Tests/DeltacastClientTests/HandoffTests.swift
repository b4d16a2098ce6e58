import DeltacastClient
import Foundation
import Testing

/// The one blocking wait of commands and tests: a value handed from another thread.
@Suite struct HandoffTests {
    @Test func aWaitReturnsTheFirstValueGivenFromAnotherThread() {
        let handoff = Handoff<Int>()
        let started = Handoff<Bool>()
        Thread.detachNewThread {
            _ = started.wait()
            handoff.give(1)
            handoff.give(2)   // only the first counts
        }
        #expect(!handoff.isGiven)
        started.give(true)
        #expect(handoff.wait(seconds: 10) == 1)
        // Every later wait returns it at once.
        #expect(handoff.wait(seconds: 0) == 1 && handoff.wait() == 1 && handoff.isGiven)
    }

    @Test func aWaitWithNothingGivenEndsAtItsLimit() {
        let handoff = Handoff<String>()
        #expect(handoff.wait(seconds: 0.05) == nil)
        handoff.give("late")
        #expect(handoff.wait(seconds: 0) == "late")
    }
}
