/// Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above
/// U+10FFFF), fed fragment by fragment so a WebSocket text message fails as soon as its bytes
/// cannot be UTF-8, not only when it ends.
public struct UTF8Validator: Sendable {
    /// Continuation bytes still expected in the current sequence.
    private var needed = 0
    /// Allowed range for the next byte (narrowed after E0, ED, F0, F4).
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    /// A validator at the start of a message.
    public init() {}

    /// Feeds bytes; false as soon as they cannot be the start of valid UTF-8.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> Bool {
        for byte in bytes {
            if needed == 0 {
                switch byte {
                case 0x00...0x7F: continue
                case 0xC2...0xDF: needed = 1
                case 0xE0: needed = 2; lower = 0xA0
                case 0xE1...0xEC, 0xEE...0xEF: needed = 2
                case 0xED: needed = 2; upper = 0x9F
                case 0xF0: needed = 3; lower = 0x90
                case 0xF1...0xF3: needed = 3
                case 0xF4: needed = 3; upper = 0x8F
                default: return false
                }
            } else {
                guard byte >= lower && byte <= upper else { return false }
                lower = 0x80
                upper = 0xBF
                needed -= 1
            }
        }
        return true
    }

    /// Whether the bytes so far end on a character boundary (checked at the end of a message).
    public var isComplete: Bool { needed == 0 }

    /// Starts over for the next message.
    public mutating func reset() { self = UTF8Validator() }
}
