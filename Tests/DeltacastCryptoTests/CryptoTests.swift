import DeltacastCrypto
import Testing

/// Known answers: FIPS 180 for the digests, RFC 4231 for HMAC-SHA256.
@Suite struct CryptoTests {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

    @Test func sha1AndSHA256OfABC() {
        #expect(hex(SHA1.digest(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA256.digest(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(SHA256.digest([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func hmacSHA256OfRFC4231TestCase2() {
        let code = HMACSHA256.authenticationCode(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8))
        #expect(code.map(hex) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func codesCompareWhole() {
        let code = HMACSHA256.authenticationCode(key: [1, 2, 3], [4, 5, 6])!
        #expect(HMACSHA256.equal(code, code))
        #expect(!HMACSHA256.equal(code, Array(code.dropLast())))
        var changed = code
        changed[31] ^= 1
        #expect(!HMACSHA256.equal(code, changed))
    }

    @Test func randomBytesDiffer() {
        let a = SecureRandom.bytes(24), b = SecureRandom.bytes(24)
        #expect(a?.count == 24 && a != b)
    }
}
