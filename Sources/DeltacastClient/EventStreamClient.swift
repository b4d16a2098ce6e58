// The sockets I/O, built where DELTACAST_SOCKETS is defined (Linux; see Package.swift).
#if DELTACAST_SOCKETS
package import DeltacastJSON

/// A blocking SSE client: a `GET` with `Accept: text/event-stream`, then events.
package final class EventStreamClient: @unchecked Sendable {
    package typealias Event = EventStreamParser.Event
    package let connection: ClientConnection
    /// The response head as received (the refusal's, when refused).
    package private(set) var head = ""
    private var parser = EventStreamParser()

    /// Connects to 127.0.0.1:`port` and requests `path`.
    package convenience init(port: Int, path: String, headers: [String] = [], timeoutSeconds: Int = 10) throws {
        let connection = try ClientConnection(host: "127.0.0.1", port: port, timeout: timeoutSeconds)
        self.init(connection: connection, target: path, host: "127.0.0.1:\(port)", headers: headers)
    }

    /// Requests `target` on an open connection and reads the response head.
    package init(connection: ClientConnection, target: String, host: String, headers: [String] = []) {
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
    package var status: Int { PushRequest.status(of: head) }

    /// The next event, or nil at the end of the stream, on a timeout, or past the parser's
    /// line limit.
    package func next() -> EventStreamParser.Event? {
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
    package enum Read: Sendable {
        case event(Event)
        /// The socket's receive timeout passed with no whole event.
        case timedOut
        /// The stream ended, or a line passed the parser's limit.
        case ended
    }

    /// The next event, telling a timeout from the end of the stream.
    package func read() -> Read {
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
    package func nextJSON() -> (id: String?, object: JSONObject)? {
        while let event = next() {
            if event.data.isEmpty { continue }
            if case .object(let object)? = try? JSONParser.parse(event.data) { return (event.id, object) }
        }
        return nil
    }
}
#endif
