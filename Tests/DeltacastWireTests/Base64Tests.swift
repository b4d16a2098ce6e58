import DeltacastWire
import Testing

/// The one Base64 codec in its two alphabets, against RFC 4648's test vectors (section 10), and
/// the one hex encoder.
@Suite struct Base64Tests {
    static let vectors: [(String, String)] = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]

    @Test func rfc4648VectorsPadded() {
        for (plain, encoded) in Self.vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
    }

    @Test func rfc4648VectorsURLSafeWithoutPadding() {
        for (plain, encoded) in Self.vectors {
            let unpadded = String(encoded.filter { $0 != "=" })
            #expect(Base64URL.encode(Array(plain.utf8)) == unpadded)
            #expect(Base64URL.decode(Array(unpadded.utf8)) == Array(plain.utf8))
        }
        // The alphabets differ in their last two characters.
        #expect(Base64.encode([0xFB, 0xFF]) == "+/8=")
        #expect(Base64URL.encode([0xFB, 0xFF]) == "-_8")
    }

    @Test func whatNoCanonicalEncodingHasIsRefused() {
        for bad in ["Zg", "Zg=", "Z===", "Zg=a", "Zh==", "Zm9v!", "Zm9v-_=="] { #expect(Base64.decode(bad) == nil, "\(bad)") }
        for bad in ["Zg==", "Z", "Zh", "Zm9v+", "Zm9v/"] { #expect(Base64URL.decode(Array(bad.utf8)) == nil, "\(bad)") }
    }

    @Test func hexIsTwoLowercaseDigitsPerByte() {
        #expect(Hex.encode([0x00, 0x0F, 0xA5, 0xFF]) == "000fa5ff")
        #expect(Hex.encode([UInt8]()) == "")
    }
}
