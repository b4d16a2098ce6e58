import DeltacastWire
import Testing
@testable import DeltacastClient

/// The client library's sans-I/O parts: the event-stream parser at every split point, and the
/// handshake's checks.
@Suite struct EventStreamParserTests {
    let stream = Array("retry: 2000\n\n: heartbeat\n\nid: 1:e\nevent: snapshot\ndata: {\"a\":\ndata: 1}\n\r\nid:2:e\r\ndata:{}\r\n\r\ndata\n\n".utf8)
    let expected = [
        EventStreamParser.Event(retry: "2000"),
        EventStreamParser.Event(id: "1:e", event: "snapshot", data: "{\"a\":\n1}"),
        EventStreamParser.Event(id: "2:e", data: "{}"),
        EventStreamParser.Event(data: ""),
    ]

    func parse(splitAt points: [Int]) throws -> [EventStreamParser.Event] {
        var parser = EventStreamParser()
        var events: [EventStreamParser.Event] = []
        var start = 0
        for point in points + [stream.count] {
            parser.append(stream[start..<point])
            start = point
            while let event = try parser.next() { events.append(event) }
        }
        return events
    }

    @Test func eventsAreTheSameWhereverTheBytesSplit() throws {
        #expect(try parse(splitAt: []) == expected)
        for point in 0...stream.count { #expect(try parse(splitAt: [point]) == expected, "split at \(point)") }
        #expect(try parse(splitAt: Array(0..<stream.count)) == expected)   // a byte at a time
    }

    @Test func aLineThatNeverEndsIsRefusedAtTheLimit() {
        var parser = EventStreamParser(maximumLine: 16)
        parser.append(Array("data: 0123456789".utf8))
        #expect((try? parser.next()) == .some(nil))
        parser.append(Array("abcdef".utf8))
        #expect(throws: EventStreamParser.LineTooLong.self) { try parser.next() }
    }
}

@Suite struct PushRequestTests {
    @Test func anUpgradeIsAcceptedOnlyWithTheKeysAcceptValue() {
        let key = PushRequest.webSocketKey()
        #expect(Base64.decode(key)?.count == 16)
        let request = String(decoding: PushRequest.webSocketUpgrade(target: "/deltacast/ws", host: "h:1", key: key, headers: ["Authorization: Bearer t"]), as: UTF8.self)
        #expect(request.hasPrefix("GET /deltacast/ws HTTP/1.1\r\nHost: h:1\r\n"))
        #expect(request.contains("Sec-WebSocket-Key: \(key)\r\n") && request.contains("Sec-WebSocket-Protocol: deltacast.v1\r\n"))
        #expect(request.hasSuffix("Authorization: Bearer t\r\n\r\n"))
        let accept = WebSocketHandshake.acceptValue(key: key)
        #expect(PushRequest.acceptsUpgrade(head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nsec-websocket-accept:  \(accept)", key: key))
        #expect(!PushRequest.acceptsUpgrade(head: "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: \(WebSocketHandshake.acceptValue(key: "other"))", key: key))
        #expect(!PushRequest.acceptsUpgrade(head: "HTTP/1.1 101 Switching Protocols", key: key))
        #expect(!PushRequest.acceptsUpgrade(head: "HTTP/1.1 403 Forbidden\r\nSec-WebSocket-Accept: \(accept)", key: key))
        #expect(PushRequest.status(of: "HTTP/1.1 429 Too Many Requests") == 429)
        #expect(PushRequest.status(of: "garbage") == 0)
    }
}
