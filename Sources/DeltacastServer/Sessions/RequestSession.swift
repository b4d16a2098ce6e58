import DeltacastWire

/// Plain HTTP/1.1 on a connection: requests taken in order from what arrived (pipelining),
/// each answered before the next is taken. A value type with no socket: the connection appends
/// bytes and performs each ``Step`` it returns. While a request is held (long-poll), the next
/// one's bytes wait here, bounded by the parser's limits.
struct RequestSession {
    private(set) var parser: HTTPRequestParser
    /// The request whose head arrived and whose body is still coming.
    private(set) var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// When the current request's head was complete (monotonic ms), for the access log.
    private(set) var headReceivedAt: Int64 = 0

    /// What the connection does next.
    enum Step {
        /// A head is complete (its header timeout stops); `expectsContinue`: write
        /// `100 Continue` before the body can come.
        case head(expectsContinue: Bool)
        /// A whole request, to answer.
        case request(HTTPRequestHead, body: [UInt8])
    }

    init(limits: HTTPRequestParser.Limits) {
        parser = HTTPRequestParser(limits: limits)
    }

    /// Nothing buffered and no request under way: the connection is between requests.
    var isIdle: Bool { head == nil && parser.isIdle }
    /// No request head is complete (the header timeout applies).
    var awaitingHead: Bool { head == nil }
    /// Bytes received and not yet taken as requests.
    var bufferedByteCount: Int { parser.bufferedByteCount }
    /// Whether the next request's first bytes are already here.
    var hasBufferedBytes: Bool { !parser.isIdle }

    mutating func append(_ bytes: ArraySlice<UInt8>) { parser.append(bytes) }

    /// What follows the last upgrade request (a client may send its first frames with it).
    mutating func takeBuffered() -> [UInt8] { parser.takeBuffered() }

    /// The next step, or nil when more bytes are needed. A malformed request throws the
    /// status and reason to answer with before closing.
    mutating func next(now: Int64) throws(HTTPParseError) -> Step? {
        while let event = try parser.next() {
            switch event {
            case .head(let received):
                head = received
                body = []
                headReceivedAt = now
                return .head(expectsContinue: received.expectsContinue)
            case .body(let bytes):
                body += bytes  // bounded by the parser (limits.max_message → 413)
            case .end:
                guard let request = head else { continue }
                head = nil
                defer { body = [] }
                return .request(request, body: body)
            }
        }
        return nil
    }
}
