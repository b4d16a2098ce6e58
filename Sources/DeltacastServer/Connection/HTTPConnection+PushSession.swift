import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// The connection's push session: installing it, running its clock, and doing what it asks
/// (``SessionAction``).
extension HTTPConnection {
    /// Makes `next` the connection's push session; its deadline, if it has one, is scheduled.
    func install(_ next: some PushSession) {
        state.counters.adjust(transport, by: -1)
        state.counters.adjust(next.transport, by: 1)
        session = next
        transport = next.transport
        framing = next.framing
        cancelSessionTimer()
        if let deadline = next.deadline {
            sessionTimer = state.loop.schedule(atMilliseconds: deadline, sessionDeadlinePassed)
        }
    }

    /// Back to plain HTTP (a held poll was answered, a wait for Redis ended).
    func uninstallSession() {
        guard let previous = session else { return }
        cancelSessionTimer()
        session = nil
        transport = nil
        framing = nil
        state.counters.adjust(previous.transport, by: -1)
        state.counters.adjust(nil, by: 1)
    }

    func cancelSessionTimer() {
        if let timer = sessionTimer { state.loop.cancelTimer(timer) }
        sessionTimer = nil
    }

    /// Runs the session's clock.
    func tickSession(now: Int64, silent: Bool) {
        guard !closed, let actions = session?.tick(now: now, silent: silent), !actions.isEmpty else { return }
        perform(actions)
        flush()
    }

    /// Bytes for the push session.
    func sessionReceived(_ bytes: ArraySlice<UInt8>) {
        guard let actions = session?.received(bytes, now: deadlines.lastActivity) else { return }
        perform(actions)
    }

    /// Does what a session asked, in order; stops once the connection is closing.
    func perform(_ actions: [SessionAction]) {
        for action in actions {
            guard perform(action) else { return }
        }
    }

    /// Does one thing a session asked (a held poll's answer comes alone: no array for it).
    /// False when the actions after it must not run: the connection is closed, or closing
    /// after what is queued.
    @discardableResult
    func perform(_ action: SessionAction) -> Bool {
        guard !closed else { return false }
        switch action {
        case .send(let bytes):
            guard lifecycle.isAnswering else { return false }
            send(bytes)
        case .sendPastWatermark(let bytes):
            if !queue.enqueue(bytes) { close() }
        case .request(let request):
            guard lifecycle.isAnswering else { return false }
            perform(request)
        case .keepForNextRequest(let bytes):
            requests.append(bytes)
            let limits = state.generation.parserLimits
            if requests.bufferedByteCount > limits.maximumHeaderBytes + limits.maximumBody { close() }
        case .answer(let request, let response):
            uninstallSession()
            detachAll()
            finish(request, response)
            flush()
            if lifecycle.isAnswering { resumeHTTP() }
        case .finish(let reason):
            if closeReason == nil { closeReason = reason }
            closeAfterFlush()
            flush()
        case .close(let reason):
            if closeReason == nil { closeReason = reason }
            close()
        case .linger:
            beginLinger(now: MonotonicClock.milliseconds())
        }
        return true
    }

    /// An event for this client alone (an `error` event), in the session's framing.
    func sendEvent(_ payload: [UInt8]) {
        guard let session, session.streams else { return }
        send(session.event(payload))
    }
}
