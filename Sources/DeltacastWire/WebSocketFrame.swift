import DeltacastJSON

/// WebSocket opcodes (RFC 6455 §5.2).
public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA

    /// Close, ping and pong.
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// A protocol violation: the close code to fail the connection with, and why.
public struct WebSocketError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Close code: 1002 protocol error, 1007 invalid payload, 1009 too big.
    public var code: UInt16
    /// Reason (sent in the close frame, at most 123 bytes).
    public var reason: String
    /// Creates an error.
    public init(code: UInt16, reason: String) { self.code = code; self.reason = reason }
    /// `CODE reason`.
    public var description: String { "\(code) \(reason)" }
}

/// Frame encoding for both ends.
public enum WebSocketFrame {
    /// One frame: FIN set unless `fin` is false, RSV1 when `compressed`; masked with `maskKey`
    /// (4 bytes) when given, as clients must.
    public static func encode(_ opcode: WebSocketOpcode, payload: some Collection<UInt8>, fin: Bool = true,
                              compressed: Bool = false, maskKey: [UInt8]? = nil) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(payload.count + 14)
        frame.append((fin ? 0x80 : 0) | (compressed ? 0x40 : 0) | opcode.rawValue)
        let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
        let length = payload.count
        if length < 126 {
            frame.append(maskBit | UInt8(length))
        } else if length <= 0xFFFF {
            frame.append(maskBit | 126)
            frame += [UInt8(length >> 8), UInt8(length & 0xFF)]
        } else {
            frame.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8(truncatingIfNeeded: length >> shift)) }
        }
        if let maskKey {
            frame += maskKey
            var index = 0
            for byte in payload { frame.append(byte ^ maskKey[index & 3]); index += 1 }
        } else {
            frame += payload
        }
        return frame
    }

    /// A close frame's payload: the code, then a UTF-8 reason cut to fit 125 bytes.
    public static func closePayload(code: UInt16, reason: String) -> [UInt8] {
        var reasonBytes = Array(reason.utf8.prefix(123))
        // Never cut a character in half.
        while !reasonBytes.isEmpty, String(validating: reasonBytes, as: UTF8.self) == nil { reasonBytes.removeLast() }
        return [UInt8(code >> 8), UInt8(code & 0xFF)] + reasonBytes
    }

    /// Whether a close code may appear on the wire (RFC 6455 §7.4). `fromServer` adds 1012
    /// (service restart), 1013 (try again later) and 1014 (bad gateway), which IANA's registry
    /// added for servers to send; a client sending one is still a protocol error (Autobahn 7.9).
    public static func isValidCloseCode(_ code: UInt16, fromServer: Bool = false) -> Bool {
        switch code {
        case 1000...1003, 1007...1011, 3000...4999: return true
        case 1012...1014: return fromServer
        default: return false
        }
    }
}

/// What a ``WebSocketFrameDecoder`` yields.
public enum WebSocketEvent: Sendable, Equatable {
    /// A complete text message (valid UTF-8) or binary message, decompressed.
    case message(WebSocketOpcode, [UInt8])
    /// A ping with its payload.
    case ping([UInt8])
    /// A pong with its payload.
    case pong([UInt8])
    /// A close frame: its code (nil when it had none) and reason.
    case close(code: UInt16?, reason: String)
}

/// Sans-I/O frame decoder (RFC 6455 §5, RFC 7692 §6). Feed bytes with ``append(_:)``, take events
/// with ``next()`` until it returns nil. Text is validated as it arrives, across fragments, so an
/// invalid message fails at its first bad byte (1007). Limits: messages (compressed and
/// decompressed) up to `maximumMessage` bytes (→ 1009).
public struct WebSocketFrameDecoder {
    /// Which end this decoder is: a server requires masked frames, a client refuses them.
    public enum Role: Sendable { case server, client }

    private let role: Role
    private let maximumMessage: Int
    private let inflater: Inflater?
    private let resetInflaterPerMessage: Bool
    private var buffer: [UInt8] = []
    private var start = 0

    private struct Header { var fin: Bool; var compressed: Bool; var opcode: WebSocketOpcode; var mask: (UInt8, UInt8, UInt8, UInt8)?; var length: Int }
    /// The data frame whose payload is being received, and how much of it has been.
    private var current: Header?
    private var received = 0
    /// The message being assembled (opcode of its first frame), if any.
    private var messageOpcode: WebSocketOpcode?
    private var messageCompressed = false
    private var message: [UInt8] = []
    private var compressedSize = 0
    private var utf8 = UTF8Validator()
    private var failed: WebSocketError?

    /// A decoder. `deflate` is the agreed permessage-deflate, if any (RSV1 is refused without).
    public init(role: Role = .server, maximumMessage: Int = 1 << 20, deflate: PerMessageDeflate.Parameters? = nil) {
        self.role = role
        self.maximumMessage = maximumMessage
        if let deflate {
            inflater = Inflater(windowBits: role == .server ? deflate.clientMaxWindowBits : deflate.serverMaxWindowBits)
            resetInflaterPerMessage = role == .client || deflate.clientNoContextTakeover
        } else {
            inflater = nil
            resetInflaterPerMessage = false
        }
    }

    /// Bytes buffered and not yet decoded.
    public var bufferedByteCount: Int { buffer.count - start }

    /// Adds received bytes.
    public mutating func append(_ bytes: some Collection<UInt8>) {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: buffer.capacity <= 64 * 1024); start = 0 }
        buffer += bytes
    }

    /// The next event, nil when more bytes are needed. After an error every call rethrows it.
    public mutating func next() throws(WebSocketError) -> WebSocketEvent? {
        if let failed { throw failed }
        do {
            return try decode()
        } catch {
            failed = error
            throw error
        }
    }

    private mutating func decode() throws(WebSocketError) -> WebSocketEvent? {
        while true {
            if current == nil {
                guard let header = try readHeader() else { compact(); return nil }
                if header.opcode.isControl {
                    guard buffer.count - start >= header.length else { rewindHeader(header); compact(); return nil }
                    let payload = unmask(start, header.length, header.mask, offset: 0)
                    start += header.length
                    return try control(header.opcode, payload)
                }
                current = header
                received = 0
                try beginFrame(header)
            }
            guard let header = current else { continue }
            let available = min(buffer.count - start, header.length - received)
            if available == 0 && header.length > received { compact(); return nil }
            if available > 0 {
                let chunk = unmask(start, available, header.mask, offset: received)
                start += available
                received += available
                try consume(chunk, endOfMessage: header.fin && received == header.length)
            } else {
                try consume([], endOfMessage: header.fin)
            }
            if received == header.length {
                current = nil
                if header.fin, let opcode = messageOpcode {
                    if opcode == .text && !utf8.isComplete { throw WebSocketError(code: 1007, reason: "text message is not valid UTF-8") }
                    let result = message
                    messageOpcode = nil
                    message = []
                    compressedSize = 0
                    utf8.reset()
                    if resetInflaterPerMessage && messageCompressed { inflater?.reset() }
                    return .message(opcode, result)
                }
            }
        }
    }

    /// Header bytes of a control frame whose payload has not fully arrived are parsed again later.
    private var headerSize = 0
    private mutating func rewindHeader(_ header: Header) { start -= headerSize }

    private mutating func readHeader() throws(WebSocketError) -> Header? {
        let available = buffer.count - start
        guard available >= 2 else { return nil }
        let b0 = buffer[start], b1 = buffer[start + 1]
        let masked = b1 & 0x80 != 0
        var length = Int(b1 & 0x7F)
        var size = 2
        if length == 126 { size += 2 } else if length == 127 { size += 8 }
        if masked { size += 4 }
        guard available >= size else { return nil }
        guard b0 & 0x30 == 0 else { throw WebSocketError(code: 1002, reason: "reserved bits RSV2/RSV3 are set") }
        guard let opcode = WebSocketOpcode(rawValue: b0 & 0x0F) else {
            throw WebSocketError(code: 1002, reason: "reserved opcode \(b0 & 0x0F)")
        }
        let fin = b0 & 0x80 != 0
        let rsv1 = b0 & 0x40 != 0
        if role == .server && !masked { throw WebSocketError(code: 1002, reason: "client frames must be masked") }
        if role == .client && masked { throw WebSocketError(code: 1002, reason: "server frames must not be masked") }
        var cursor = start + 2
        if length == 126 {
            length = Int(buffer[cursor]) << 8 | Int(buffer[cursor + 1])
            cursor += 2
            guard length >= 126 else { throw WebSocketError(code: 1002, reason: "frame length not minimally encoded") }
        } else if length == 127 {
            guard buffer[cursor] & 0x80 == 0 else { throw WebSocketError(code: 1002, reason: "64-bit frame length has its high bit set") }
            var value: UInt64 = 0
            for index in 0..<8 { value = value << 8 | UInt64(buffer[cursor + index]) }
            cursor += 8
            guard value > 0xFFFF else { throw WebSocketError(code: 1002, reason: "frame length not minimally encoded") }
            guard value <= UInt64(maximumMessage) else { throw tooBig() }
            length = Int(value)
        }
        if opcode.isControl {
            guard fin else { throw WebSocketError(code: 1002, reason: "control frames must not be fragmented") }
            guard length <= 125 else { throw WebSocketError(code: 1002, reason: "control frame payload over 125 bytes") }
            guard !rsv1 else { throw WebSocketError(code: 1002, reason: "RSV1 set on a control frame") }
        }
        var mask: (UInt8, UInt8, UInt8, UInt8)?
        if masked { mask = (buffer[cursor], buffer[cursor + 1], buffer[cursor + 2], buffer[cursor + 3]); cursor += 4 }
        headerSize = cursor - start
        start = cursor
        return Header(fin: fin, compressed: rsv1, opcode: opcode, mask: mask, length: length)
    }

    private mutating func beginFrame(_ header: Header) throws(WebSocketError) {
        if header.opcode == .continuation {
            guard messageOpcode != nil else { throw WebSocketError(code: 1002, reason: "continuation frame without a message to continue") }
            guard !header.compressed else { throw WebSocketError(code: 1002, reason: "RSV1 set on a continuation frame") }
        } else {
            guard messageOpcode == nil else { throw WebSocketError(code: 1002, reason: "new data frame before the fragmented message ended") }
            if header.compressed && inflater == nil {
                throw WebSocketError(code: 1002, reason: "RSV1 set but permessage-deflate was not negotiated")
            }
            messageOpcode = header.opcode
            messageCompressed = header.compressed
        }
        compressedSize += header.length
        if compressedSize > maximumMessage { throw tooBig() }
    }

    private mutating func consume(_ chunk: [UInt8], endOfMessage: Bool) throws(WebSocketError) {
        let before = message.count
        if messageCompressed, let inflater {
            do {
                try inflater.inflate(chunk, endOfMessage: endOfMessage, into: &message, limit: maximumMessage)
            } catch {
                if error == .tooLarge { throw tooBig() }
                throw WebSocketError(code: 1007, reason: "compressed message is not valid deflate data")
            }
        } else {
            message += chunk
        }
        if messageOpcode == .text && !utf8.feed(message[before...]) {
            throw WebSocketError(code: 1007, reason: "text message is not valid UTF-8")
        }
    }

    private func tooBig() -> WebSocketError {
        WebSocketError(code: 1009, reason: "message over \(maximumMessage) bytes")
    }

    private func control(_ opcode: WebSocketOpcode, _ payload: [UInt8]) throws(WebSocketError) -> WebSocketEvent {
        switch opcode {
        case .ping: return .ping(payload)
        case .pong: return .pong(payload)
        default:
            if payload.isEmpty { return .close(code: nil, reason: "") }
            guard payload.count >= 2 else { throw WebSocketError(code: 1002, reason: "close frame with a 1-byte payload") }
            let code = UInt16(payload[0]) << 8 | UInt16(payload[1])
            guard WebSocketFrame.isValidCloseCode(code, fromServer: role == .client) else { throw WebSocketError(code: 1002, reason: "invalid close code \(code)") }
            guard let reason = String(validating: payload[2...], as: UTF8.self) else {
                throw WebSocketError(code: 1007, reason: "close reason is not valid UTF-8")
            }
            return .close(code: code, reason: reason)
        }
    }

    private func unmask(_ from: Int, _ count: Int, _ mask: (UInt8, UInt8, UInt8, UInt8)?, offset: Int) -> [UInt8] {
        var bytes = Array(buffer[from..<(from + count)])
        guard let mask else { return bytes }
        let key = [mask.0, mask.1, mask.2, mask.3]
        bytes.withUnsafeMutableBufferPointer { pointer in
            for index in 0..<pointer.count { pointer[index] ^= key[(offset + index) & 3] }
        }
        return bytes
    }

    private mutating func compact() {
        if start > 64 * 1024 || (start > 0 && start == buffer.count) {
            buffer.removeSubrange(0..<start)
            start = 0
        }
    }
}
