/// Reads values out of a validated tape: the bytes are known good, so nothing here can fail.
struct JSONTapeReader {
    let bytes: UnsafeRawBufferPointer
    let tape: UnsafeBufferPointer<UInt64>
    private var scratch: [UInt8] = []

    init(bytes: UnsafeRawBufferPointer, tape: UnsafeBufferPointer<UInt64>) {
        self.bytes = bytes
        self.tape = tape
    }

    /// The tape index after the value at `index` (past a container's end).
    @inline(__always) static func next(after index: Int, in tape: UnsafeBufferPointer<UInt64>) -> Int {
        let entry = tape[index]
        switch JSONTape.tag(entry) {
        case .arrayStart, .objectStart: return JSONTape.b(entry) + 1
        default: return index + 1
        }
    }

    /// The value at `index`.
    mutating func value(at index: Int) -> JSONValue {
        let entry = tape[index]
        switch JSONTape.tag(entry) {
        case .null: return .null
        case .false: return .bool(false)
        case .true: return .bool(true)
        case .number:
            return .number(JSONNumber(unchecked: String(decoding: slice(JSONTape.a(entry), JSONTape.b(entry)), as: UTF8.self)))
        case .string: return .string(string(entry))
        case .arrayStart:
            let end = JSONTape.b(entry)
            var elements: [JSONValue] = []
            elements.reserveCapacity(JSONTape.b(tape[end]))
            var cursor = index + 1
            while cursor < end {
                elements.append(value(at: cursor))
                cursor = Self.next(after: cursor, in: tape)
            }
            return .array(elements)
        case .objectStart:
            let end = JSONTape.b(entry)
            var members: [(String, JSONValue)] = []
            members.reserveCapacity(JSONTape.b(tape[end]))
            var cursor = index + 1
            while cursor < end {
                let key = string(tape[cursor])
                members.append((key, value(at: cursor + 1)))
                cursor = Self.next(after: cursor + 1, in: tape)
            }
            return .object(JSONObject(members))
        case .arrayEnd, .objectEnd:
            preconditionFailure("a tape index points at a container's end")
        }
    }

    @inline(__always) func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + length])
    }

    /// The decoded string of a string entry.
    mutating func string(_ entry: UInt64) -> String {
        let raw = slice(JSONTape.a(entry), JSONTape.stringLength(entry))
        guard JSONTape.isEscaped(entry) else { return String(decoding: raw, as: UTF8.self) }
        scratch.removeAll(keepingCapacity: true)
        Self.unescape(raw, into: &scratch)
        return String(decoding: scratch, as: UTF8.self)
    }

    /// Appends the UTF-8 of a validated string's raw content, escapes decoded.
    static func unescape(_ raw: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        var index = 0
        var runStart = 0
        while index < raw.count {
            guard raw[index] == UInt8(ascii: "\\") else { index += 1; continue }
            output.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[runStart..<index]))
            let escape = raw[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "b"): output.append(0x08)
            case UInt8(ascii: "f"): output.append(0x0C)
            case UInt8(ascii: "n"): output.append(0x0A)
            case UInt8(ascii: "r"): output.append(0x0D)
            case UInt8(ascii: "t"): output.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4(raw, at: index)!
                index += 4
                if (0xD800..<0xDC00).contains(scalar) {
                    let low = hex4(raw, at: index + 2)!
                    index += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                output.append(contentsOf: Unicode.UTF8.encode(Unicode.Scalar(scalar)!)!)
            default: output.append(escape)   // \" \\ \/
            }
            runStart = index
        }
        output.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[runStart..<raw.count]))
    }

    /// Four hexadecimal digits at `offset` (the caller checked there are four bytes).
    static func hex4(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32? {
        var value: UInt32 = 0
        for byte in bytes[offset..<offset + 4] {
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: return nil
            }
            value = value << 4 | digit
        }
        return value
    }
}
