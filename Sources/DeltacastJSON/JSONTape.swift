/// One token of a parsed document, 64 bits: what it is and where its bytes are. A document's
/// tape lists its tokens in order; a container's start links to its end, so a reader skips a
/// whole subtree in one step, and strings and numbers stay bytes until someone asks for them.
///
/// ```
///  63    60 59                          32 31                               0
/// +--------+------------------------------+----------------------------------+
/// |  tag   |  A: byte offset (28 bits)     |  B: 32 bits, by tag               |
/// +--------+------------------------------+----------------------------------+
/// null, false, true   A: offset of the literal       B: 0
/// number              A: offset of its text          B: length of its text
/// string              A: offset after the quote      B: raw length, bit 31 set if it has escapes
/// array/object start  A: offset of '[' or '{'        B: tape index of the matching end
/// array/object end    A: offset after ']' or '}'     B: elements (members, duplicates included)
/// ```
/// An object's members are its key (a string entry) followed by its value. Offsets fit 28 bits,
/// which is why ``JSONTape/maximumBytes`` is 256 MiB.
struct JSONTape {
    enum Tag: UInt8 {
        case null = 1, `false`, `true`, number, string, arrayStart, objectStart, arrayEnd, objectEnd
    }

    /// The largest document a tape can address: 2^28 − 1 bytes.
    static let maximumBytes = (1 << 28) - 1
    static let escapedFlag: UInt64 = 1 << 31

    @inline(__always) static func entry(_ tag: Tag, _ a: Int, _ b: UInt64) -> UInt64 {
        UInt64(tag.rawValue) << 60 | UInt64(a) << 32 | b
    }
    /// Every entry a builder wrote has a valid tag, so the raw value is not checked again.
    @inline(__always) static func tag(_ entry: UInt64) -> Tag { Tag(rawValue: UInt8(entry >> 60)).unsafelyUnwrapped }
    @inline(__always) static func a(_ entry: UInt64) -> Int { Int(entry >> 32 & 0x0FFF_FFFF) }
    @inline(__always) static func b(_ entry: UInt64) -> Int { Int(entry & 0xFFFF_FFFF) }
    /// A string's raw length (escapes as written).
    @inline(__always) static func stringLength(_ entry: UInt64) -> Int { Int(entry & 0x7FFF_FFFF) }
    @inline(__always) static func isEscaped(_ entry: UInt64) -> Bool { entry & escapedFlag != 0 }
}
