import Testing
@testable import DeltacastServer

/// The connection's lifecycle on its own: what each event moves it to, and what a drained
/// queue means in each state.
@Suite struct ConnectionLifecycleTests {
    @Test func readingPausesAtTheWatermarkAndResumesOnce() {
        var lifecycle = ConnectionLifecycle.open
        let r1 = lifecycle.resumeReading()
        #expect(!r1)
        lifecycle.pauseReading()
        #expect(lifecycle == .paused && lifecycle.isAnswering)
        let r2 = lifecycle.resumeReading()
        #expect(r2)
        #expect(lifecycle == .open)
        let r3 = lifecycle.resumeReading()
        #expect(!r3)
    }

    @Test func anAnswerThatClosesStopsReadingThenLingersThenCloses() {
        var lifecycle = ConnectionLifecycle.paused
        lifecycle.closeAfterFlush()
        #expect(lifecycle == .closingAfterFlush && !lifecycle.isAnswering)
        lifecycle.pauseReading()   // no reading to pause any more
        #expect(lifecycle == .closingAfterFlush)
        let r4 = lifecycle.resumeReading()
        #expect(!r4)
        #expect(lifecycle.afterDrain(peerFinished: false, allAnswered: false) == .finishClosing)
        let r5 = lifecycle.beginLinger()
        #expect(r5)
        let r6 = lifecycle.beginLinger()
        #expect(!r6)   // once
        #expect(lifecycle == .lingering)
        lifecycle.closeAfterFlush()   // too late to matter
        #expect(lifecycle == .lingering)
        let r7 = lifecycle.close()
        #expect(r7)
        let r8 = lifecycle.close()
        #expect(!r8)
        let r9 = lifecycle.beginLinger()
        #expect(!r9)
    }

    @Test func aDrainedQueueClosesWhenThePeerFinishedAndAllWasAnswered() {
        let open = ConnectionLifecycle.open
        #expect(open.afterDrain(peerFinished: true, allAnswered: true) == .close)
        // Half a request left (or a stream): the peer's FIN alone does not close here.
        #expect(open.afterDrain(peerFinished: true, allAnswered: false) == .carryOn)
        #expect(open.afterDrain(peerFinished: false, allAnswered: true) == .carryOn)
        #expect(ConnectionLifecycle.closingAfterFlush.afterDrain(peerFinished: true, allAnswered: true) == .close)
        #expect(ConnectionLifecycle.closed.afterDrain(peerFinished: true, allAnswered: true) == .carryOn)
    }

    @Test func aSessionMayLingerWithoutClosingAfterAFlushFirst() {
        var lifecycle = ConnectionLifecycle.open
        let r10 = lifecycle.beginLinger()
        #expect(r10)
        #expect(!lifecycle.isAnswering)
        #expect(lifecycle.afterDrain(peerFinished: false, allAnswered: false) == .finishClosing)
    }
}
