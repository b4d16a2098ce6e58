public import DeltacastJSON

/// An incremental `text/event-stream` parser (the WHATWG HTML "event stream interpretation"):
/// bytes in, in any split, events out. Lines end in LF or CRLF; a blank line ends an event;
/// lines starting with `:` are comments; one space after the colon is dropped; `data` lines
/// join with LF.
public struct EventStreamParser: Sendable {
    /// One event block.
    public struct Event: Equatable, Sendable {
        public var id: String?
        public var event: String?
        public var data: String
        public var retry: String?
        public init(id: String? = nil, event: String? = nil, data: String = "", retry: String? = nil) {
            self.id = id; self.event = event; self.data = data; self.retry = retry
        }
    }

    private var buffer: [UInt8] = []
    private var scanned = 0
    private var current = Event()
    private var dataLines: [String] = []
    private var hasField = false
    /// A bound on one unfinished line (a stream that never sends a newline is refused).
    public let maximumLine: Int

    public init(maximumLine: Int = 64 << 20) { self.maximumLine = maximumLine }

    /// Bytes beyond a line longer than ``maximumLine``.
    public struct LineTooLong: Error {}

    public mutating func append(_ bytes: some Collection<UInt8>) { buffer += bytes }

    /// The next complete event (blocks of comments only are skipped), or nil until more bytes
    /// arrive.
    public mutating func next() throws(LineTooLong) -> Event? {
        while true {
            guard let newline = buffer[scanned...].firstIndex(of: 10) else {
                scanned = buffer.count
                if buffer.count > maximumLine { throw LineTooLong() }
                return nil
            }
            var end = newline
            if end > 0 && buffer[end - 1] == 13 { end -= 1 }
            let line = buffer[0..<end]
            defer { buffer.removeFirst(newline + 1); scanned = 0 }
            if line.isEmpty {
                guard hasField else { continue }
                var event = current
                event.data = dataLines.joined(separator: "\n")
                current = Event()
                dataLines = []
                hasField = false
                return event
            }
            if line.first == 0x3A { continue }   // a comment
            let colon = line.firstIndex(of: 0x3A) ?? line.endIndex
            let name = String(decoding: line[..<colon], as: UTF8.self)
            var valueStart = colon == line.endIndex ? colon : line.index(after: colon)
            if valueStart < line.endIndex && line[valueStart] == 0x20 { valueStart = line.index(after: valueStart) }
            let value = String(decoding: line[valueStart...], as: UTF8.self)
            hasField = true
            switch name {
            case "id": current.id = value
            case "event": current.event = value
            case "data": dataLines.append(value)
            case "retry": current.retry = value
            default: break
            }
        }
    }
}

/// A blocking SSE client: a `GET` with `Accept: text/event-stream`, then events.
public final class EventStreamClient: @unchecked Sendable {
    public typealias Event = EventStreamParser.Event
    public let connection: ClientConnection
    /// The response head as received (the refusal's, when refused).
    public private(set) var head = ""
    private var parser = EventStreamParser()

    /// Connects to 127.0.0.1:`port` and requests `path`.
    public convenience init(port: Int, path: String, headers: [String] = [], timeoutSeconds: Int = 10) throws {
        let connection = try ClientConnection(host: "127.0.0.1", port: port, timeout: timeoutSeconds)
        self.init(connection: connection, target: path, host: "127.0.0.1:\(port)", headers: headers)
    }

    /// Requests `target` on an open connection and reads the response head.
    public init(connection: ClientConnection, target: String, host: String, headers: [String] = []) {
        self.connection = connection
        connection.send(PushRequest.eventStream(target: target, host: host, headers: headers))
        var reader = ResponseReader(connection)
        do {
            head = try reader.head()
            parser.append(reader.takeRest())
        } catch {
            head = ""
        }
    }

    /// The response's status code.
    public var status: Int { PushRequest.status(of: head) }

    /// The next event, or nil at the end of the stream, on a timeout, or past the parser's
    /// line limit.
    public func next() -> EventStreamParser.Event? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let event = try parser.next() { return event }
            } catch {
                return nil
            }
            let n = connection.read(into: &chunk)
            if n <= 0 { return nil }
            parser.append(chunk[0..<n])
        }
    }

    /// What one read gave.
    public enum Read: Sendable {
        case event(Event)
        /// The socket's receive timeout passed with no whole event.
        case timedOut
        /// The stream ended, or a line passed the parser's limit.
        case ended
    }

    /// The next event, telling a timeout from the end of the stream.
    public func read() -> Read {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let event = try parser.next() { return .event(event) }
            } catch {
                return .ended
            }
            let n = connection.read(into: &chunk)
            if n == 0 { return .ended }
            if n < 0 { return .timedOut }
            parser.append(chunk[0..<n])
        }
    }

    /// The next event's data parsed as a JSON object (events without data are skipped).
    public func nextJSON() -> (id: String?, object: JSONObject)? {
        while let event = next() {
            if event.data.isEmpty { continue }
            if case .object(let object)? = try? JSONParser.parse(event.data) { return (event.id, object) }
        }
        return nil
    }
}
