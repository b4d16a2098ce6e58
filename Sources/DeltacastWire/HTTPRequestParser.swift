/// A request line and header block, parsed and checked.
public struct HTTPRequestHead: Sendable {
    /// The method (a token, case-sensitive: `GET`, `POST`...).
    public var method: String
    /// The request target as sent: origin-form `/path?query`, `*`, or absolute-form.
    public var target: String
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    /// The header fields.
    public var headers: HTTPHeaders
    /// Whether the connection stays open after this request (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    public var keepAlive: Bool
    /// Whether the client sent `Expect: 100-continue` and waits for `100 Continue` before the body.
    public var expectsContinue: Bool
    /// The body's framing.
    public var body: BodyFraming

    /// How the request body is delimited.
    public enum BodyFraming: Sendable, Equatable {
        case none
        case contentLength(Int)
        case chunked
    }
}

/// Why a request was refused: the status to answer with (the connection is then closed), and
/// a reason for the response body and the log.
public struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 400, 413, 414, 417, 431, 501 or 505.
    public var status: Int
    /// What was wrong.
    public var reason: String
    /// Creates an error.
    public init(status: Int, reason: String) { self.status = status; self.reason = reason }
    /// `STATUS reason`.
    public var description: String { "\(status) \(reason)" }
}

/// One thing the parser found.
public enum HTTPRequestEvent: Sendable, Equatable {
    /// A request's head. Body events (if any) and `end` follow.
    case head(HTTPRequestHead)
    /// Some of the body, in order (already de-chunked).
    case body([UInt8])
    /// The request is complete; the next bytes belong to the next (pipelined) request.
    case end
}

extension HTTPRequestHead: Equatable {
    public static func == (lhs: HTTPRequestHead, rhs: HTTPRequestHead) -> Bool {
        lhs.method == rhs.method && lhs.target == rhs.target && lhs.minorVersion == rhs.minorVersion
            && lhs.headers.fields.map { "\($0.name): \($0.value)" } == rhs.headers.fields.map { "\($0.name): \($0.value)" }
            && lhs.keepAlive == rhs.keepAlive && lhs.expectsContinue == rhs.expectsContinue && lhs.body == rhs.body
    }
}

/// An incremental, sans-I/O HTTP/1.1 request parser (RFC 9112). Feed it bytes as they arrive
/// with ``append(_:)``, then call ``next()`` until it returns nil (more bytes needed).
///
/// Strict where leniency enables request smuggling or desync: lines must end in CRLF (a bare
/// CR or bare LF → 400), no obs-fold, no whitespace between a field name and its colon, both
/// `Content-Length` and `Transfer-Encoding` → 400, conflicting or invalid `Content-Length` →
/// 400, a transfer coding other than a final `chunked` → 501, a method that is not a token →
/// 400, a missing or repeated `Host` in HTTP/1.1 → 400. Every limit is checked as soon as the
/// bytes that break it arrive, so no input grows the buffer past the limits.
public struct HTTPRequestParser: Sendable {
    /// Limits; each maps to the status that exceeding it gets.
    public struct Limits: Sendable {
        /// Longest request line in bytes → 414.
        public var maximumRequestLine = 8 * 1024
        /// Largest header block (all field lines) in bytes → 431.
        public var maximumHeaderBytes = 16 * 1024
        /// Most header fields → 431.
        public var maximumHeaderCount = 100
        /// Largest body → 413.
        public var maximumBody = 1024 * 1024
        /// Creates limits.
        public init(maximumRequestLine: Int = 8 * 1024, maximumHeaderBytes: Int = 16 * 1024,
                    maximumHeaderCount: Int = 100, maximumBody: Int = 1024 * 1024) {
            self.maximumRequestLine = maximumRequestLine
            self.maximumHeaderBytes = maximumHeaderBytes
            self.maximumHeaderCount = maximumHeaderCount
            self.maximumBody = maximumBody
        }
    }

    private enum State: Sendable {
        case requestLine
        case headers(method: String, target: String, minor: Int, headers: HTTPHeaders, bytes: Int)
        case fixedBody(remaining: Int)
        case chunkSize(received: Int)
        case chunkData(remaining: Int, received: Int)
        case chunkDataEnd(received: Int)
        case trailers(bytes: Int)
        case failed(HTTPParseError)
    }

    private let limits: Limits
    private var state: State = .requestLine
    private var buffer: [UInt8] = []
    private var start = 0
    private var emptyLinesSkipped = 0

    /// A parser with the given limits.
    public init(limits: Limits = .init()) { self.limits = limits }

    /// Bytes not yet consumed (for tests and for bounding the buffer).
    public var bufferedByteCount: Int { buffer.count - start }

    /// Whether the parser is between requests (nothing of a next request received yet).
    public var isIdle: Bool {
        if case .requestLine = state { return bufferedByteCount == 0 }
        return false
    }

    /// Removes and returns the bytes received after the last complete request (after a
    /// protocol switch such as a WebSocket upgrade, they belong to the new protocol).
    public mutating func takeBuffered() -> [UInt8] {
        defer { buffer.removeAll(); start = 0 }
        return Array(buffer[start...])
    }

    /// Adds received bytes.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// Adds received bytes: the overload a connection calls, a copy with no per-byte iteration
    /// (the generic one is not specialized across the module boundary).
    public mutating func append(_ bytes: ArraySlice<UInt8>) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// Drops consumed bytes: all of them when everything was consumed (the usual case between
    /// requests, at no cost), or the consumed front once it is large.
    private mutating func compact() {
        if start == buffer.count && start > 0 {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 4096 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
    }

    /// The next event, or nil when more bytes are needed.
    /// - Throws: ``HTTPParseError``; the parser then stays failed (answer and close).
    public mutating func next() throws(HTTPParseError) -> HTTPRequestEvent? {
        do {
            return try step()
        } catch {
            state = .failed(error)
            throw error
        }
    }

    private func fail(_ status: Int, _ reason: String) -> HTTPParseError { HTTPParseError(status: status, reason: reason) }

    /// Finds the next line in the buffer: returns its bytes (without CRLF) and consumes it.
    /// Returns nil when the line is incomplete; throws on a bare CR or LF or an overlong line.
    private mutating func line(limit: Int, status: Int, what: String, configuredLimit: Int? = nil) throws(HTTPParseError) -> ArraySlice<UInt8>? {
        let stated = configuredLimit ?? limit
        // The first CR or LF within the limit (the limit is applied to the bytes scanned, so
        // the verdict never depends on how the bytes were split across reads: found by the
        // FuzzHTTP target).
        let scanEnd = min(buffer.count, start + limit + 1)
        let found: Int? = buffer.withUnsafeBufferPointer { bytes in
            var index = start
            while index < scanEnd {
                let byte = bytes[index]
                if byte == 0x0D || byte == 0x0A { return index }
                index += 1
            }
            return nil
        }
        guard let index = found else {
            if buffer.count - start > limit { throw fail(status, "\(what) longer than \(stated) bytes") }
            return nil
        }
        if buffer[index] == 0x0A { throw fail(400, "bare LF in \(what); lines must end with CRLF") }
        guard index + 1 < buffer.count else {
            if index - start > limit { throw fail(status, "\(what) longer than \(stated) bytes") }
            return nil
        }
        guard buffer[index + 1] == 0x0A else { throw fail(400, "bare CR in \(what)") }
        if index - start > limit { throw fail(status, "\(what) longer than \(stated) bytes") }
        let line = buffer[start..<index]
        start = index + 2
        return line
    }

    private mutating func step() throws(HTTPParseError) -> HTTPRequestEvent? {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .requestLine:
                guard let line = try line(limit: limits.maximumRequestLine, status: 414, what: "request line") else { return nil }
                if line.isEmpty {
                    // RFC 9112 2.2: ignore a few empty lines before a request line.
                    emptyLinesSkipped += 1
                    if emptyLinesSkipped > 4 { throw fail(400, "too many empty lines before the request line") }
                    continue
                }
                emptyLinesSkipped = 0
                let (method, target, minor) = try parseRequestLine(line)
                state = .headers(method: method, target: target, minor: minor, headers: HTTPHeaders(), bytes: 0)
            case .headers(let method, let target, let minor, var headers, let bytes):
                let remaining = limits.maximumHeaderBytes - bytes
                guard let line = try line(limit: max(0, remaining), status: 431, what: "header block", configuredLimit: limits.maximumHeaderBytes) else { return nil }
                if line.isEmpty {
                    return try finishHead(method: method, target: target, minor: minor, headers: headers)
                }
                if headers.count >= limits.maximumHeaderCount {
                    throw fail(431, "more than \(limits.maximumHeaderCount) header fields")
                }
                let (name, value) = try parseField(line)
                // The state lets go of its copy first, so adding a field does not copy them all.
                state = .requestLine
                headers.add(name: name, value: value)
                state = .headers(method: method, target: target, minor: minor, headers: headers, bytes: bytes + line.count + 2)
            case .fixedBody(let remaining):
                if remaining == 0 { state = .requestLine; return .end }
                let available = min(remaining, buffer.count - start)
                if available == 0 { return nil }
                let chunk = Array(buffer[start..<start + available])
                start += available
                state = .fixedBody(remaining: remaining - available)
                return .body(chunk)
            case .chunkSize(let received):
                guard let line = try line(limit: 1024, status: 400, what: "chunk size line") else { return nil }
                let size = try parseChunkSize(line)
                if received + size > limits.maximumBody {
                    throw fail(413, "body larger than \(limits.maximumBody) bytes")
                }
                state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size, received: received + size)
            case .chunkData(let remaining, let received):
                let available = min(remaining, buffer.count - start)
                if available == 0 { return nil }
                let chunk = Array(buffer[start..<start + available])
                start += available
                state = remaining == available ? .chunkDataEnd(received: received) : .chunkData(remaining: remaining - available, received: received)
                return .body(chunk)
            case .chunkDataEnd(let received):
                guard buffer.count - start >= 2 else { return nil }
                guard buffer[start] == 0x0D, buffer[start + 1] == 0x0A else {
                    throw fail(400, "chunk data not followed by CRLF")
                }
                start += 2
                state = .chunkSize(received: received)
            case .trailers(let bytes):
                let remaining = limits.maximumHeaderBytes - bytes
                guard let line = try line(limit: max(0, remaining), status: 431, what: "trailer section", configuredLimit: limits.maximumHeaderBytes) else { return nil }
                if line.isEmpty { state = .requestLine; return .end }
                _ = try parseField(line)  // validated, then dropped: trailers carry nothing we use
                state = .trailers(bytes: bytes + line.count + 2)
            }
        }
    }

    private func parseRequestLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> (String, String, Int) {
        // Exactly two spaces: METHOD SP TARGET SP VERSION.
        guard let firstSpace = line.firstIndex(of: 0x20),
              let secondSpace = line[(firstSpace + 1)...].firstIndex(of: 0x20),
              !line[(secondSpace + 1)...].contains(0x20) else {
            throw fail(400, "malformed request line; expected METHOD SP TARGET SP HTTP-VERSION separated by single spaces")
        }
        let method = line[..<firstSpace], target = line[(firstSpace + 1)..<secondSpace], version = line[(secondSpace + 1)...]
        guard !method.isEmpty, method.allSatisfy(isTokenByte) else { throw fail(400, "invalid method; a method is a token") }
        guard !target.isEmpty, target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw fail(400, "invalid request target")
        }
        let methodText = String(decoding: method, as: UTF8.self)
        let targetText = String(decoding: target, as: UTF8.self)
        let isOrigin = target.first == UInt8(ascii: "/")
        let isAsterisk = targetText == "*"
        // Lowercasing the target (a copy) only when it is not the usual /path.
        let isAbsolute = !isOrigin && (targetText.lowercasedASCII.hasPrefix("http://") || targetText.lowercasedASCII.hasPrefix("https://"))
        guard isOrigin || (isAsterisk && methodText == "OPTIONS") || isAbsolute else {
            throw fail(400, "invalid request target; expected /path, * (OPTIONS) or an absolute URL")
        }
        guard version.count == 8, version.starts(with: "HTTP/".utf8),
              isDigit(version[version.startIndex + 5]), version[version.startIndex + 6] == UInt8(ascii: "."),
              isDigit(version[version.startIndex + 7]) else {
            throw fail(400, "malformed HTTP version")
        }
        let major = Int(version[version.startIndex + 5] - 0x30), minor = Int(version[version.startIndex + 7] - 0x30)
        guard major == 1, minor <= 1 else { throw fail(505, "HTTP version \(major).\(minor) is not supported; use HTTP/1.1") }
        return (methodText, targetText, minor)
    }

    private func parseField(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> (String, String) {
        if line.first == 0x20 || line.first == 0x09 { throw fail(400, "obsolete line folding is not allowed") }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw fail(400, "header field without a colon") }
        let name = line[line.startIndex..<colon]
        if name.last == 0x20 || name.last == 0x09 { throw fail(400, "whitespace between a header name and its colon") }
        guard !name.isEmpty, name.allSatisfy(isTokenByte) else { throw fail(400, "invalid header name") }
        var value = line[(colon + 1)...]
        while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
        guard value.allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }) else {
            throw fail(400, "control character in a header value")
        }
        return (String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    private mutating func finishHead(method: String, target: String, minor: Int, headers: HTTPHeaders) throws(HTTPParseError) -> HTTPRequestEvent {
        // Counted, not collected: every request passes here, and most have no body.
        let hosts = headers.count(of: "Host")
        if minor == 1 && hosts == 0 { throw fail(400, "missing Host header") }
        if hosts > 1 { throw fail(400, "more than one Host header") }
        let lengths = headers.count(of: "Content-Length") == 0 ? [] : headers.values("Content-Length")
        let chunkedOrNot = headers["Transfer-Encoding"] != nil
        if !lengths.isEmpty && chunkedOrNot {
            throw fail(400, "both Content-Length and Transfer-Encoding")
        }
        var framing = HTTPRequestHead.BodyFraming.none
        if chunkedOrNot {
            let codings = headers.tokens("Transfer-Encoding").map(\.lowercasedASCII)
            if minor == 0 { throw fail(400, "Transfer-Encoding in an HTTP/1.0 request") }
            guard codings.last == "chunked" else { throw fail(501, "unsupported transfer coding; only chunked is accepted") }
            guard codings.count == 1 else {
                throw fail(codings.dropLast().contains("chunked") ? 400 : 501, "unsupported transfer coding; only chunked is accepted")
            }
            framing = .chunked
        } else if !lengths.isEmpty {
            var length: Int?
            for element in lengths.flatMap({ $0.split(separator: ",", omittingEmptySubsequences: false) }) {
                let text = element.trimmingOWS
                guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy(isDigit), let value = Int(text) else {
                    throw fail(400, "invalid Content-Length")
                }
                if let length, length != value { throw fail(400, "conflicting Content-Length values") }
                length = value
            }
            guard let length else { throw fail(400, "invalid Content-Length") }
            if length > limits.maximumBody { throw fail(413, "body larger than \(limits.maximumBody) bytes") }
            framing = length > 0 ? .contentLength(length) : .none
        }
        let connection = headers["Connection"] == nil ? [] : headers.tokens("Connection").map(\.lowercasedASCII)
        let keepAlive = minor == 1 ? !connection.contains("close") : connection.contains("keep-alive") && !connection.contains("close")
        var expectsContinue = false
        if let expect = headers["Expect"] {
            guard expect.lowercasedASCII == "100-continue" else { throw fail(417, "unsupported expectation '\(expect)'") }
            expectsContinue = minor == 1 && framing != .none
        }
        switch framing {
        case .none: state = .fixedBody(remaining: 0)
        case .contentLength(let length): state = .fixedBody(remaining: length)
        case .chunked: state = .chunkSize(received: 0)
        }
        return .head(HTTPRequestHead(method: method, target: target, minorVersion: minor, headers: headers,
                                     keepAlive: keepAlive, expectsContinue: expectsContinue, body: framing))
    }

    private func parseChunkSize(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> Int {
        let digits = line.prefix { hexValue($0) != nil }
        guard !digits.isEmpty else { throw fail(400, "invalid chunk size") }
        guard digits.count <= 15 else { throw fail(413, "body larger than \(limits.maximumBody) bytes") }
        let rest = line[digits.endIndex...]
        // Chunk extensions (`;name=value`) are allowed and ignored; nothing else may follow.
        var afterSpace = rest.drop { $0 == 0x20 || $0 == 0x09 }
        if !afterSpace.isEmpty {
            guard afterSpace.first == UInt8(ascii: ";") else { throw fail(400, "invalid chunk size") }
            afterSpace = afterSpace.dropFirst()
            guard afterSpace.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else { throw fail(400, "invalid chunk extension") }
        }
        return digits.reduce(0) { $0 * 16 + hexValue($1)! }
    }
}

@inline(__always) func isDigit(_ byte: UInt8) -> Bool { byte &- 0x30 < 10 }

@inline(__always) func hexValue(_ byte: UInt8) -> Int? {
    switch byte {
    case 0x30...0x39: Int(byte - 0x30)
    case 0x41...0x46: Int(byte - 0x41 + 10)
    case 0x61...0x66: Int(byte - 0x61 + 10)
    default: nil
    }
}

/// RFC 9110 tchar.
@inline(__always) func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
         UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
         UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
    default: false
    }
}

private extension String {
    var lowercasedASCII: String { Substring(self).lowercasedASCII }
}
