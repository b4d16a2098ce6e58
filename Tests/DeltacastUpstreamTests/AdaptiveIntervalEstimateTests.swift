import Testing
@testable import DeltacastUpstream

/// The learned change rate and the interval it gives, on explicit times.
@Suite struct AdaptiveIntervalEstimateTests {
    /// Polls at the interval it gives, for `seconds`, with a change every `changeEvery` ms
    /// (a poll finds one when a change time fell since the poll before).
    func learn(_ estimate: inout AdaptiveInterval, seconds: Int64, changeEvery: Int64?) {
        var now: Int64 = 0
        while now < seconds * 1000 {
            let step = estimate.milliseconds
            let changed = changeEvery.map { now / $0 != (now + step) / $0 } ?? false
            now += step
            estimate.record(covering: step, changed: changed)
        }
    }

    @Test func aNewTopicStartsBetweenTheBoundsFromAWeakPrior() {
        let estimate = AdaptiveInterval(minimum: 250, maximum: 60_000)
        #expect(estimate.milliseconds == 8_660)   // √(5 × 250 × 60,000)
        #expect(AdaptiveInterval(minimum: 1_000, maximum: 1_000).milliseconds == 1_000)
    }

    @Test func theIntervalIsTheGeometricMeanOfTheMinimumAndTheTimeBetweenChanges() {
        var everySecond = AdaptiveInterval(minimum: 250, maximum: 60_000)
        learn(&everySecond, seconds: 3_600, changeEvery: 4_000)
        // A change every 4 s: √(250 × 4,000) = 1,000 ms, polled at that, so each poll at most one.
        #expect((0.22...0.28).contains(everySecond.changesPerSecond))
        #expect((900...1_100).contains(everySecond.milliseconds))
        var hourly = AdaptiveInterval(minimum: 250, maximum: 60_000)
        learn(&hourly, seconds: 36_000, changeEvery: 3_600_000)
        // A change an hour: √(250 × 3,600,000) = 30 s (the estimate swings within an hour).
        #expect((20_000...45_000).contains(hourly.milliseconds))
    }

    @Test func aTopicThatChangesAtEveryPollComesToItsMinimum() {
        var busy = AdaptiveInterval(minimum: 250, maximum: 60_000)
        learn(&busy, seconds: 1_800, changeEvery: 1)
        // A poll counts at most one change, so the rate it learns is one per poll: the
        // interval closes on √(250 × interval) = 250, within a fifth of it in half an hour.
        #expect(busy.milliseconds <= 300)
    }

    @Test func whatWasLearnedFadesSoAQuietTopicReachesItsMaximum() {
        var topic = AdaptiveInterval(minimum: 250, maximum: 60_000)
        learn(&topic, seconds: 600, changeEvery: 2_000)
        #expect(topic.milliseconds < 1_000)
        // Ten busy minutes fade with the hour's time constant: the interval lengthens as the
        // quiet hours add up, and reaches the maximum once under one change in 4 hours is left.
        learn(&topic, seconds: 4 * 3_600, changeEvery: nil)
        #expect((10_000..<60_000).contains(topic.milliseconds))
        learn(&topic, seconds: 4 * 3_600, changeEvery: nil)
        #expect(topic.milliseconds == 60_000)
    }

    @Test func aChangeReportedLaterCountsAsOne() {
        var topic = AdaptiveInterval(minimum: 250, maximum: 60_000)
        topic.record(covering: 8_660, changed: false)
        let quiet = topic.milliseconds
        topic.recordChange()
        #expect(topic.milliseconds < quiet)
        #expect(abs(topic.changes - 1.2) < 0.01)
    }

    @Test func aReloadKeepsTheLearnedRateUnderTheNewBounds() {
        var topic = AdaptiveInterval(minimum: 250, maximum: 60_000)
        learn(&topic, seconds: 600, changeEvery: 2_000)
        let rate = topic.changesPerSecond
        let reloaded = topic.rebounded(minimum: 1_000, maximum: 10_000)
        #expect(reloaded.changesPerSecond == rate)
        #expect(reloaded.milliseconds >= 1_000)
        #expect(AdaptiveInterval(minimum: 250, maximum: 60_000).rebounded(minimum: 250, maximum: 1_000).milliseconds == 1_000)
    }
}
