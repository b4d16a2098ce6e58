import DeltacastConfig
import DeltacastHub
import DeltacastWire

/// Why a connection ends, for its `close` log line.
struct CloseReason: Equatable {
    var level: LogLevel
    /// The WebSocket close code, if one was sent.
    var code: Int? = nil
    var text: String
}

/// What a session asks of the connection that carries it. The connection (HTTPConnection.swift)
/// is the I/O shell: it owns the socket, the outbound queue, the subscriptions and the
/// deadlines, and performs these in order. Sessions decide and never touch a socket.
enum SessionAction {
    /// Queue these bytes (past `limits.send_buffer` the connection closes).
    case send([UInt8])
    /// Queue these bytes even past the high watermark: a close frame is tiny and must go.
    case sendPastWatermark([UInt8])
    /// Something the client asked for over the stream (WebSocket messages). The shell takes a
    /// token of `limits.message_rate` first.
    case request(ClientRequest)
    /// Bytes of a pipelined request that arrived while one is held: kept until it is answered.
    case keepForNextRequest(ArraySlice<UInt8>)
    /// Answer the held request with this response; the connection goes back to plain HTTP.
    case answer(HTTPRequestHead, RoutedResponse)
    /// Write what is queued, then close (`reason` for the log; nil keeps an earlier one).
    case finish(CloseReason?)
    /// Close now.
    case close(CloseReason?)
    /// Half-close (our side is done) and wait, at most 2 s, for the peer's close: a WebSocket
    /// whose close frame the peer has not answered yet.
    case linger
}

/// A client's request over an open stream, once the protocol decoded it.
enum ClientRequest: Equatable {
    /// A `deltacast.v1` message.
    case message(ClientMessage)
    /// A message the protocol refuses; this `error` event answers it.
    case refused([UInt8])
    /// A message this kind of stream does not act on (a single-topic WebSocket only takes `auth`).
    case ignored
}

/// One push mode of a connection: a WebSocket, an event stream or a held long-poll. A value type
/// with no socket and no clock (STYLE.md #2): the shell feeds it what arrives, the changes of
/// its topics and the time, and performs the ``SessionAction``s it returns. Adding a transport
/// means one type conforming to this, in its own file, and nothing in the shell (plus a
/// ``ChangeFraming`` case if it sends an encoding of changes that none of the others does).
protocol PushSession {
    /// Its transport: the connection gauge, the delivery counters and the hub's subscriber
    /// counts go by it.
    var transport: Transport { get }
    /// Its name in logs and on the status page.
    var name: String { get }
    /// Whether it is an open stream to the client, which can be sent an event at any time (false
    /// for a held request, answered once, whose credential was checked when it arrived).
    var streams: Bool { get }
    /// Whether its cursors are listed together in one `id:` (a multiplexed event stream).
    var listsCursors: Bool { get }
    /// Whether the shell goes on reading while output backs up (an event stream's client has
    /// nothing to say; reading only notices it leave).
    var readsWhileOutputBacksUp: Bool { get }
    /// Headers that `auth: passthrough` subscriptions made later forward (the WebSocket's
    /// upgrade request), or nil.
    var credentialHeaders: HTTPHeaders? { get }
    /// When ``tick(now:silent:)`` must run even between the loop's sweeps (monotonic ms): a
    /// held poll's wait. Read once, when the session begins.
    var deadline: Int64? { get }

    /// Bytes from the peer, at `now` (monotonic ms).
    mutating func received(_ bytes: ArraySlice<UInt8>, now: Int64) -> [SessionAction]
    /// A change of one of its topics (never a duplicate: the subscriptions filter those).
    /// `subscriptions` gives the connection's subscriptions to a session that needs them. The
    /// shell asks only sessions whose ``framing`` does not push (a held poll); the others'
    /// changes are queued through the subscriptions in their framing, and they answer nil.
    func deliver(_ change: Change, subscriptions: () -> SubscriptionSet) -> SessionAction?
    /// How it frames the changes it pushes: a small value the shell keeps beside the session,
    /// read once when the session begins. (A call on the session itself, through its
    /// existential, copies the whole session once per delivery.)
    var framing: ChangeFraming { get }
    /// An event for this client alone (an `error` event), framed.
    func event(_ payload: [UInt8]) -> [UInt8]
    /// The sweep, at `now`: `silent` when nothing was written for `server.sse_heartbeat` and
    /// nothing is queued.
    mutating func tick(now: Int64, silent: Bool) -> [SessionAction]
    /// Everything queued was written; `closing` when the connection was told to close once it
    /// was (``SessionAction/finish(_:)``): close at once, or linger for the peer's answer.
    func drained(closing: Bool) -> [SessionAction]
    /// Bytes that arrived while lingering: true when they hold the peer's close.
    mutating func receivedWhileLingering(_ bytes: ArraySlice<UInt8>) -> Bool
    /// One subscription ended with its `error` event already queued (refused by the upstream or
    /// the configuration, or its endpoint removed).
    mutating func subscriptionEnded(reason: String) -> [SessionAction]
    /// Ends the stream with `code` (WebSocket close code) and `reason`.
    mutating func end(code: UInt16, reason: String) -> [SessionAction]
    /// The server is shutting down.
    mutating func drain() -> [SessionAction]
}

/// How a push session frames one change, once per delivery: which of the change's shared
/// encodings (each made once, in the hub, by ``Change``) it sends. A closed set, because each
/// case is one of those encodings: a transport that needs another adds it to ``Change`` and a
/// case here. An enum rather than a protocol: read on every delivery, an existential cost a
/// copy through its value witnesses and an indirect call each time (about 7 % of the user-space
/// time of a 10,000-subscriber throughput profile).
enum ChangeFraming: Equatable {
    /// The change's WebSocket frame; the permessage-deflate one when the client agreed to the
    /// shared window (server_no_context_takeover).
    case webSocket(sharedDeflate: Bool)
    /// The change's SSE event; on a multiplexed stream its `id:` lists every topic's cursor.
    case eventStream(multiplexed: Bool)
    /// A held poll queues no change: each one may answer it
    /// (``PushSession/deliver(_:subscriptions:)``).
    case answering

    /// Whether changes are queued as they come (false: the session answers them itself).
    var pushes: Bool { self != .answering }

    /// `change` in this framing. `listedCursors` gives the cursors of every listed subscription,
    /// once the change was admitted (``SubscriptionSet/listedCursors``).
    func frame(_ change: Change, listedCursors: () -> String) -> [UInt8]? {
        switch self {
        case .webSocket(let sharedDeflate):
            return change.webSocketFrame(deflate: sharedDeflate)
        case .eventStream(let multiplexed):
            guard multiplexed else { return change.sseEvent }
            guard change.cursor != nil else { return change.sseBody }
            return Array("id: \(listedCursors())\n".utf8) + change.sseBody
        case .answering:
            return nil
        }
    }
}

extension PushSession {
    func deliver(_ change: Change, subscriptions: () -> SubscriptionSet) -> SessionAction? { nil }
    var streams: Bool { true }
    var listsCursors: Bool { false }
    var readsWhileOutputBacksUp: Bool { false }
    var credentialHeaders: HTTPHeaders? { nil }
    var deadline: Int64? { nil }
    func drained(closing: Bool) -> [SessionAction] { closing ? [.close(nil)] : [] }
    mutating func receivedWhileLingering(_ bytes: ArraySlice<UInt8>) -> Bool { false }
}
