import DeltacastCrypto
import Testing
@testable import DeltacastWire

/// A client frame as a browser sends it: masked with a fixed key.
func clientFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true, compressed: Bool = false) -> [UInt8] {
    WebSocketFrame.encode(opcode, payload: payload, fin: fin, compressed: compressed, maskKey: [0x37, 0xFA, 0x21, 0x3D])
}

/// Feeds `bytes` split into pieces of `step` bytes; returns events, ending with `error CODE`.
func decodeLog(_ bytes: [UInt8], step: Int = .max, maximumMessage: Int = 1 << 20,
               deflate: PerMessageDeflate.Parameters? = nil) -> [String] {
    var decoder = WebSocketFrameDecoder(role: .server, maximumMessage: maximumMessage, deflate: deflate)
    var log: [String] = []
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + min(step, bytes.count))
        decoder.append(bytes[offset..<end])
        offset = end
        do {
            while let event = try decoder.next() {
                switch event {
                case .message(let opcode, let payload): log.append("\(opcode) \(String(decoding: payload, as: UTF8.self))")
                case .ping(let payload): log.append("ping \(payload.count)")
                case .pong(let payload): log.append("pong \(payload.count)")
                case .close(let code, let reason): log.append("close \(code.map(String.init) ?? "none") \(reason)")
                }
            }
        } catch {
            log.append("error \(error.code)")
            return log
        }
    }
    return log
}

@Suite struct HandshakeTests {
    @Test func sha1AndAcceptValueMatchTheRFCExamples() {
        // RFC 3174 test 1 and RFC 6455 §1.3's worked example.
        let hex = SHA1.digest(Array("abc".utf8)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(hex == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(WebSocketHandshake.acceptValue(key: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(Base64.decode("Zm9vYg==") == Array("foob".utf8))
        #expect(Base64.decode("Zm9vYg=") == nil)
        #expect(Base64.encode(Array("fooba".utf8)) == "Zm9vYmE=")
    }

    func head(_ extra: [(String, String)], method: String = "GET") -> HTTPRequestHead {
        var parser = HTTPRequestParser()
        var text = "\(method) /deltacast/ws HTTP/1.1\r\nHost: a\r\n"
        for (name, value) in extra { text += "\(name): \(value)\r\n" }
        parser.append(Array((text + "\r\n").utf8))
        guard case .head(let head)? = try? parser.next() else { fatalError("unparsable test request") }
        return head
    }

    let valid = [("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]

    @Test(arguments: [
        ("Sec-WebSocket-Version", "8", 426, "only WebSocket version 13 is supported"),
        ("Sec-WebSocket-Key", "short", 400, "Sec-WebSocket-Key must be 16 bytes in base64"),
        ("Connection", "keep-alive", 400, "Connection must include 'Upgrade'"),
        ("Sec-WebSocket-Protocol", "other.v2", 400, "none of the offered subprotocols is supported; this endpoint speaks deltacast.v1"),
    ])
    func badHandshakesAreRefused(_ name: String, _ value: String, _ status: Int, _ message: String) {
        var fields = valid.filter { $0.0 != name }
        fields.append((name, value))
        guard case .reject(let got, let headers, let text) = WebSocketHandshake.negotiate(head(fields), subprotocols: ["deltacast.v1"]) else {
            Issue.record("accepted")
            return
        }
        #expect(got == status)
        #expect(text == message)
        if status == 426 { #expect(headers["Sec-WebSocket-Version"] == "13") }
    }

    @Test func acceptNamesTheSubprotocolAndAgreesOnDeflate() {
        let fields = valid + [("Sec-WebSocket-Protocol", "x, deltacast.v1"), ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
        guard case .accept(let headers, let deflate, let subprotocol) = WebSocketHandshake.negotiate(head(fields), subprotocols: ["deltacast.v1"]) else {
            Issue.record("refused")
            return
        }
        #expect(subprotocol == "deltacast.v1")
        #expect(headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(headers["Sec-WebSocket-Extensions"] == "permessage-deflate; server_no_context_takeover; client_max_window_bits=9")
        #expect(deflate?.clientMaxWindowBits == 9)
    }

    @Test(arguments: [
        ("permessage-deflate", "permessage-deflate; server_no_context_takeover"),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
        ("permessage-deflate; client_no_context_takeover", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("permessage-deflate; client_max_window_bits=12", "permessage-deflate; server_no_context_takeover; client_max_window_bits=9"),
        // Invalid offers are declined; the next valid one is taken.
        ("permessage-deflate; server_max_window_bits=7, permessage-deflate", "permessage-deflate; server_no_context_takeover"),
        ("permessage-deflate; unknown_param", nil),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", nil),
        ("x-webkit-deflate-frame", nil),
    ] as [(String, String?)])
    func deflateOffersAreNegotiated(_ offer: String, _ response: String?) {
        #expect(PerMessageDeflate.negotiate(offers: offer)?.responseValue == response)
    }

    @Test func aServerWindowOf8MeansUncompressedMessages() {
        let agreed = PerMessageDeflate.negotiate(offers: "permessage-deflate; server_max_window_bits=8")
        #expect(agreed?.serverMaxWindowBits == 8)
        #expect(agreed?.serverCompresses == false)
    }
}

@Suite struct FrameDecoderTests {
    let fragmentedWithPing: [UInt8] = clientFrame(.text, Array("Hel".utf8), fin: false) + clientFrame(.ping, [1, 2])
        + clientFrame(.continuation, Array("lo €".utf8), fin: false) + clientFrame(.continuation, Array("!".utf8))
        + clientFrame(.binary, [UInt8](repeating: 0x41, count: 300)) + clientFrame(.close, WebSocketFrame.closePayload(code: 1000, reason: "bye"))

    @Test func fragmentsAndInterleavedControlFramesDecodeTheSameAtEverySplit() {
        let expected = ["ping 2", "text Hello €!", "binary " + String(repeating: "A", count: 300), "close 1000 bye"]
        #expect(decodeLog(fragmentedWithPing) == expected)
        for step in [1, 2, 3, 7, 13] {
            #expect(decodeLog(fragmentedWithPing, step: step) == expected, "step \(step)")
        }
    }

    @Test(arguments: [
        ("unmasked frame", WebSocketFrame.encode(.text, payload: Array("hi".utf8)), "error 1002"),
        ("reserved opcode 3", [0x83, 0x80, 0, 0, 0, 0], "error 1002"),
        ("RSV2 set", [0xA1, 0x80, 0, 0, 0, 0], "error 1002"),
        ("RSV1 without deflate", clientFrame(.text, [0x41], compressed: true), "error 1002"),
        ("fragmented ping", clientFrame(.ping, [], fin: false), "error 1002"),
        ("ping over 125 bytes", clientFrame(.ping, [UInt8](repeating: 0, count: 126)), "error 1002"),
        ("continuation without start", clientFrame(.continuation, [0x41]), "error 1002"),
        ("new message inside a fragmented one", clientFrame(.text, [0x41], fin: false) + clientFrame(.text, [0x42]), "error 1002"),
        ("16-bit length not minimal", [0x81, 0xFE, 0x00, 0x05, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 5), "error 1002"),
        ("64-bit length high bit", [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "error 1002"),
        ("invalid UTF-8", clientFrame(.text, [0x41, 0xC0, 0xAF]), "error 1007"),
        ("surrogate in UTF-8", clientFrame(.text, [0xED, 0xA0, 0x80]), "error 1007"),
        ("text ending mid-character", clientFrame(.text, [0xE2, 0x82]), "error 1007"),
        ("close with a 1-byte payload", clientFrame(.close, [0x03]), "error 1002"),
        ("close code 1005 on the wire", clientFrame(.close, [0x03, 0xED]), "error 1002"),
        ("close code 999", clientFrame(.close, [0x03, 0xE7]), "error 1002"),
        ("close code 1012 from a client", clientFrame(.close, [0x03, 0xF4]), "error 1002"),
        ("close reason not UTF-8", clientFrame(.close, [0x03, 0xE8, 0xFF]), "error 1007"),
        ("message over the limit", clientFrame(.binary, [UInt8](repeating: 0, count: 2000)), "error 1009"),
        ("fragments over the limit together", clientFrame(.binary, [UInt8](repeating: 0, count: 600), fin: false) + clientFrame(.continuation, [UInt8](repeating: 0, count: 600)), "error 1009"),
    ] as [(String, [UInt8], String)])
    func violationsGetTheirCloseCode(_ name: String, _ bytes: [UInt8], _ expected: String) {
        #expect(decodeLog(bytes, maximumMessage: 1024).last == expected, "\(name)")
        #expect(decodeLog(bytes, step: 1, maximumMessage: 1024).last == expected, "\(name), byte by byte")
    }

    /// 1012 (service restart), 1013 and 1014 are for servers to send (IANA's registry): what
    /// Deltacast sends on a graceful shutdown, so its own client must accept them.
    @Test func aClientAcceptsTheServerOnlyCloseCodes() throws {
        for code: UInt16 in [1012, 1013, 1014] {
            var decoder = WebSocketFrameDecoder(role: .client)
            decoder.append(WebSocketFrame.encode(.close, payload: WebSocketFrame.closePayload(code: code, reason: "service restart"))[...])
            guard case .close(let received, let reason)? = try decoder.next() else { Issue.record("no close for \(code)"); continue }
            #expect(received == code && reason == "service restart")
        }
    }

    @Test func invalidUTF8FailsAtTheFirstBadFragmentNotAtTheEnd() {
        // The message never ends: a validator that waited for FIN would never fail.
        let bytes = clientFrame(.text, Array("ok".utf8), fin: false) + clientFrame(.continuation, [0xF8], fin: false)
        #expect(decodeLog(bytes) == ["error 1007"])
    }

    @Test func compressedMessagesRoundTripAndExpansionIsBounded() {
        let text = String(repeating: "{\"price\":101.2,\"symbol\":\"ACME\"}", count: 200)
        let deflater = Deflater(windowBits: 15)
        let compressed = deflater.compress(Array(text.utf8))
        #expect(compressed.count < text.utf8.count / 10)
        let parameters = PerMessageDeflate.Parameters()
        // Twice in a row: the deflater resets between messages (no context takeover).
        let twice = clientFrame(.text, compressed, compressed: true) + clientFrame(.text, deflater.compress(Array(text.utf8)), compressed: true)
        #expect(decodeLog(twice, step: 5, maximumMessage: 1 << 20, deflate: parameters) == ["text " + text, "text " + text])
        // A small frame that inflates past the limit: 1009, not gigabytes.
        let bomb = deflater.compress([UInt8](repeating: 0, count: 1 << 20))
        #expect(bomb.count < 2048)
        #expect(decodeLog(clientFrame(.binary, bomb, compressed: true), maximumMessage: 64 * 1024, deflate: parameters) == ["error 1009"])
        // Garbage that is not deflate data: 1007.
        #expect(decodeLog(clientFrame(.text, [0xFF, 0xFF, 0xFF], compressed: true), deflate: parameters) == ["error 1007"])
    }

    /// Per-connection messages are compressed at level 1, shared frames at 6: both inflate to
    /// the message, and each level compresses what it is given (level 6 no larger than 1).
    @Test(arguments: [1, 6, 9])
    func everyLevelRoundTripsAndCompresses(_ level: Int) {
        let text = (0..<400).map { "{\"id\":\($0),\"price\":\(101 + $0 % 7).25,\"symbol\":\"S\($0 % 13)\"}" }.joined(separator: ",")
        let deflater = Deflater(windowBits: 15, level: level)
        #expect(deflater.level == level)
        let compressed = deflater.compress(Array(text.utf8))
        #expect(compressed.count < text.utf8.count / 3)
        #expect(compressed.count >= Deflater(windowBits: 15, level: 9).compress(Array(text.utf8)).count)
        #expect(decodeLog(clientFrame(.text, compressed, compressed: true), maximumMessage: 1 << 20, deflate: PerMessageDeflate.Parameters()) == ["text " + text])
    }

    /// A sender may end a message's deflate data with a final (BFINAL) block; only the tail the
    /// receiver appends may follow it. Found by FuzzWebSocket: the outcome used to depend on
    /// where the bytes were split.
    @Test func aFinalDeflateBlockIsAcceptedAndDataAfterItIsRefusedAtEverySplit() {
        let parameters = PerMessageDeflate.Parameters()
        let finalHello: [UInt8] = [0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        let good = clientFrame(.text, finalHello, compressed: true) + clientFrame(.text, finalHello, compressed: true)
        let trailing = clientFrame(.text, finalHello + [0x01, 0x02], compressed: true)
        let fuzzed: [UInt8] = [0xc1, 0x8b, 0x73, 0x65, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x44, 0x69, 0x63, 0x91, 0x52, 0x52, 0x64, 0x02, 0x54, 0x03]
        for step in [1, 2, 3, 5, 8, 11, 64] {
            #expect(decodeLog(good, step: step, deflate: parameters) == ["text hello", "text hello"], "step \(step)")
            #expect(decodeLog(trailing, step: step, deflate: parameters) == ["error 1007"], "step \(step)")
            #expect(decodeLog(fuzzed, step: step, deflate: parameters) == decodeLog(fuzzed, deflate: parameters), "step \(step)")
        }
    }

    @Test func aClientDecoderRefusesMaskedFramesAndReadsServerFrames() throws {
        var decoder = WebSocketFrameDecoder(role: .client)
        decoder.append(WebSocketFrame.encode(.text, payload: Array("hi".utf8)))
        #expect(try decoder.next() == .message(.text, Array("hi".utf8)))
        var strict = WebSocketFrameDecoder(role: .client)
        strict.append(clientFrame(.text, [0x41]))
        var thrown: WebSocketError?
        do { _ = try strict.next() } catch { thrown = error }
        #expect(thrown == WebSocketError(code: 1002, reason: "server frames must not be masked"))
    }
}

@Suite struct EventEncodingTests {
    @Test func sseSplitsEveryKindOfLineBreakIntoDataLines() {
        let event = ServerSentEvents.event(id: "ab12-3", event: "patch", data: Array("one\ntwo\r\nthree\rfour".utf8))
        #expect(String(decoding: event, as: UTF8.self) == "id: ab12-3\nevent: patch\ndata: one\ndata: two\ndata: three\ndata: four\n\n")
        #expect(String(decoding: ServerSentEvents.event(id: "x\ny", data: []), as: UTF8.self) == "id: xy\ndata: \n\n")
    }

    @Test func eventsAreTheDesignDocumentsBytes() {
        let cursor = Cursor(epoch: "k3f9", seq: 18), base = Cursor(epoch: "k3f9", seq: 17)
        #expect(String(decoding: DeltacastEvent.patch(topic: "/api/prices", cursor: cursor, base: base, patch: Array("[]".utf8)), as: UTF8.self)
                == #"{"type":"patch","topic":"/api/prices","cursor":"k3f9-18","base":"k3f9-17","patch":[]}"#)
        #expect(String(decoding: DeltacastEvent.status(topic: "/t", error: (503, "down \"x\"")), as: UTF8.self)
                == #"{"type":"status","topic":"/t","upstream":"error","http":503,"message":"down \"x\"","stale":true}"#)
        #expect(String(decoding: DeltacastEvent.error(topic: nil, code: .tooMany, message: "m"), as: UTF8.self)
                == #"{"type":"error","code":"too_many","message":"m"}"#)
    }

    @Test(arguments: [("k3f9-17", true), ("abcdefghijkl-1", true), ("abc-1", false), ("K3F9-1", false), ("k3f9-", false), ("k3f9-1x", false), ("", false), ("k3f9-99999999999999999999", false)])
    func cursorsParseOnlyInTheirDocumentedShape(_ text: String, _ valid: Bool) {
        #expect((Cursor(text) != nil) == valid)
    }

    @Test(arguments: [
        (#"{"type":"subscribe","topic":"/a","since":"k3f9-2"}"#, "subscribe /a k3f9-2"),
        (#"{"type":"subscribe","topic":"/a","since":""}"#, "subscribe /a none"),
        (#"{"type":"unsubscribe","topic":"/a"}"#, "unsubscribe /a"),
        (#"{"type":"auth","token":"t"}"#, "auth"),
        ("not json", "error message is not valid JSON: line 1, column 1 (byte 0): expected 'null'"),
        ("[]", "error message must be a JSON object"),
        (#"{"type":"drift","topic":"/a","cursor":"abcd-4"}"#, "drift /a abcd-4"),
        (#"{"type":"drift"}"#, #"error drift needs a "topic" path starting with /"#),
        (#"{"type":"dance","topic":"/a"}"#, #"error unknown message type "dance"; expected subscribe, unsubscribe, auth or drift"#),
        (#"{"type":"subscribe"}"#, #"error subscribe needs a "topic" path starting with /"#),
        (#"{"type":"subscribe","topic":"/a","since":5}"#, #"error "since" must be a cursor string"#),
    ])
    func clientMessagesParseOrSayWhatIsWrong(_ text: String, _ expected: String) {
        let rendered: String = switch ClientMessage.parse(Array(text.utf8)) {
        case .success(.subscribe(let topic, let since)): "subscribe \(topic) \(since?.description ?? "none")"
        case .success(.unsubscribe(let topic)): "unsubscribe \(topic)"
        case .success(.auth): "auth"
        case .success(.drift(let topic, let cursor)): "drift \(topic) \(cursor?.description ?? "none")"
        case .failure(let error): "error \(error.message)"
        }
        #expect(rendered == expected)
    }
}

