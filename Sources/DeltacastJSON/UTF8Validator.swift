/// Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above
/// U+10FFFF), fed fragment by fragment so a WebSocket text message fails as soon as its bytes
/// cannot be UTF-8, not only when it ends. The JSON parser checks its strings by the same
/// table (`sequence(startingWith:)`).
public struct UTF8Validator: Sendable {
    // Inlinable across modules: the WebSocket decoder feeds it every byte of every text
    // message, and an unspecialized generic costs a witness call per byte.
    /// Continuation bytes still expected in the current sequence.
    @usableFromInline var needed = 0
    /// Allowed range for the next byte (narrowed after E0, ED, F0, F4).
    @usableFromInline var lower: UInt8 = 0x80
    @usableFromInline var upper: UInt8 = 0xBF

    /// A validator at the start of a message.
    public init() {}

    /// Feeds bytes; false as soon as they cannot be the start of valid UTF-8.
    @inlinable
    public mutating func feed(_ bytes: some Collection<UInt8>) -> Bool {
        for byte in bytes {
            if needed == 0 {
                if byte < 0x80 { continue }
                guard let sequence = Self.sequence(startingWith: byte) else { return false }
                (needed, lower, upper) = sequence
            } else {
                guard byte >= lower && byte <= upper else { return false }
                lower = 0x80
                upper = 0xBF
                needed -= 1
            }
        }
        return true
    }

    /// What a sequence that starts with `lead` (≥ 0x80) needs: its continuation bytes, and the
    /// range of the first of them (narrowed after E0, ED, F0, F4; the others are 80...BF).
    /// Nil when no sequence starts with it.
    @inlinable
    static func sequence(startingWith lead: UInt8) -> (continuations: Int, lower: UInt8, upper: UInt8)? {
        switch lead {
        case 0xC2...0xDF: (1, 0x80, 0xBF)
        case 0xE0: (2, 0xA0, 0xBF)
        case 0xE1...0xEC, 0xEE...0xEF: (2, 0x80, 0xBF)
        case 0xED: (2, 0x80, 0x9F)
        case 0xF0: (3, 0x90, 0xBF)
        case 0xF1...0xF3: (3, 0x80, 0xBF)
        case 0xF4: (3, 0x80, 0x8F)
        default: nil
        }
    }

    /// Whether the bytes so far end on a character boundary (checked at the end of a message).
    public var isComplete: Bool { needed == 0 }

    /// Starts over for the next message.
    public mutating func reset() { self = UTF8Validator() }
}
