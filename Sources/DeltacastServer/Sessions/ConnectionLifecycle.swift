/// Where a connection is in its life. The shell asks it what an event means and does what it
/// answers; nothing else decides whether a connection reads, answers or closes.
///
/// ```
/// open ⇄ paused ─┐
///   │            ├→ closingAfterFlush → lingering → closed
///   └────────────┴─────────────────────────────────→ closed
/// ```
enum ConnectionLifecycle: Equatable {
    /// Reading and answering.
    case open
    /// Reading stopped at the outbound queue's high watermark; it resumes when the queue drains
    /// below the low one.
    case paused
    /// Nothing more is read or answered: what is queued is written, then the connection
    /// lingers (or the session ends its own way).
    case closingAfterFlush
    /// Half-closed after our last bytes: what arrives is discarded until the peer closes, or
    /// its deadline passes (a reset now could destroy the answer before the peer reads it).
    case lingering
    /// The descriptor is closed.
    case closed

    /// Requests are read and answered (open, or paused with some buffered).
    var isAnswering: Bool { self == .open || self == .paused }

    /// What to do once the outbound queue is empty.
    enum AfterDrain: Equatable {
        /// Close now: the peer finished sending and every request it sent was answered.
        case close
        /// The last bytes are out: linger, or let the session end its own way.
        case finishClosing
        /// Carry on: watch for input, and resume a paused reader.
        case carryOn
    }

    /// The queue drained. `peerFinished`: the peer sent its FIN; `allAnswered`: a plain HTTP
    /// connection has answered every complete request it received.
    func afterDrain(peerFinished: Bool, allAnswered: Bool) -> AfterDrain {
        if peerFinished && allAnswered && self != .closed { return .close }
        if self == .closingAfterFlush || self == .lingering { return .finishClosing }
        return .carryOn
    }

    /// The queue passed its high watermark while reading: stop reading.
    mutating func pauseReading() {
        if self == .open { self = .paused }
    }

    /// The queue drained below its low watermark: true when reading was paused and resumes.
    mutating func resumeReading() -> Bool {
        guard self == .paused else { return false }
        self = .open
        return true
    }

    /// An answer that closes, a stream that ends: stop reading, write what is queued.
    mutating func closeAfterFlush() {
        if isAnswering { self = .closingAfterFlush }
    }

    /// Our last bytes are written: true when lingering begins now (not before, not closed).
    mutating func beginLinger() -> Bool {
        guard self != .lingering, self != .closed else { return false }
        self = .lingering
        return true
    }

    /// The descriptor is to be closed: true the first time only.
    mutating func close() -> Bool {
        guard self != .closed else { return false }
        self = .closed
        return true
    }
}
