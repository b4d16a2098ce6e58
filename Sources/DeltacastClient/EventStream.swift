/// An incremental `text/event-stream` parser (the WHATWG HTML "event stream interpretation"):
/// bytes in, in any split, events out. Lines end in LF or CRLF; a blank line ends an event;
/// lines starting with `:` are comments; one space after the colon is dropped; `data` lines
/// join with LF.
package struct EventStreamParser: Sendable {
    /// One event block.
    package struct Event: Equatable, Sendable {
        package var id: String?
        package var event: String?
        package var data: String
        package var retry: String?
        package init(id: String? = nil, event: String? = nil, data: String = "", retry: String? = nil) {
            self.id = id; self.event = event; self.data = data; self.retry = retry
        }
    }

    private var buffer: [UInt8] = []
    private var scanned = 0
    private var current = Event()
    private var dataLines: [String] = []
    private var hasField = false
    /// A bound on one unfinished line (a stream that never sends a newline is refused).
    package let maximumLine: Int

    package init(maximumLine: Int = 64 << 20) { self.maximumLine = maximumLine }

    /// Bytes beyond a line longer than ``maximumLine``.
    package struct LineTooLong: Error {}

    package mutating func append(_ bytes: some Collection<UInt8>) { buffer += bytes }

    /// The next complete event (blocks of comments only are skipped), or nil until more bytes
    /// arrive.
    package mutating func next() throws(LineTooLong) -> Event? {
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
