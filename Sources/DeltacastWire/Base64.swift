/// Base64 (RFC 4648), standard alphabet, padded: WebSocket keys, HTTP Basic credentials.
public enum Base64 {
    static let codec = Base64Codec(alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", padded: true)

    /// Encodes `bytes`.
    public static func encode(_ bytes: some Collection<UInt8>) -> String { codec.encode(bytes) }

    /// Decodes; nil unless `text` is canonical padded Base64.
    public static func decode(_ text: String) -> [UInt8]? { codec.decode(text.utf8) }
}

/// Base64url (RFC 4648 section 5), without padding: JWS, tickets.
public enum Base64URL {
    static let codec = Base64Codec(alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", padded: false)

    /// Encodes `bytes`, without padding.
    public static func encode(_ bytes: some Collection<UInt8>) -> String { codec.encode(bytes) }

    /// Decodes; nil on a character outside the alphabet, on padding, or on a length or final
    /// bits no canonical encoding has.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? { codec.decode(text) }
}

/// The one Base64 codec; the two alphabets and their padding rules are its parameters.
struct Base64Codec: Sendable {
    private let alphabet: [UInt8]
    private let values: [UInt8]
    private let padded: Bool

    init(alphabet text: String, padded: Bool) {
        alphabet = Array(text.utf8)
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, character) in alphabet.enumerated() { table[Int(character)] = UInt8(index) }
        values = table
        self.padded = padded
    }

    func encode(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var output: [UInt8] = []
        output.reserveCapacity((input.count + 2) / 3 * 4)
        var index = 0
        while index < input.count {
            let count = min(3, input.count - index)
            var value: UInt32 = 0
            for offset in 0..<count { value |= UInt32(input[index + offset]) << UInt32(16 - 8 * offset) }
            for position in 0...count { output.append(alphabet[Int(value >> UInt32(18 - 6 * position) & 0x3F)]) }
            if padded { for _ in count..<3 { output.append(UInt8(ascii: "=")) } }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }

    func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var input = Array(text)
        if padded {
            guard input.count % 4 == 0 else { return nil }
            for _ in 0..<2 where input.last == UInt8(ascii: "=") { input.removeLast() }
        }
        guard input.count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for character in input {
            let value = values[Int(character)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero (a canonical encoding).
        guard accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return output
    }
}
