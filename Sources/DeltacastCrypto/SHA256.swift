import COpenSSL

/// SHA-256 (through OpenSSL): the `digest` of snapshots and patches, API-key lookups.
public enum SHA256 {
    /// The 32-byte digest of `bytes`.
    public static func digest(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        _ = bytes.withUnsafeBytes { COpenSSL.SHA256($0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count, &digest) }
        return digest
    }
}

/// HMAC-SHA256 (through OpenSSL): the HS256 signature of JSON Web Tokens.
public enum HMACSHA256 {
    /// The 32-byte authentication code of `data` under `key`, or nil if OpenSSL fails.
    public static func authenticationCode(key: [UInt8], _ data: [UInt8]) -> [UInt8]? {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = key.withUnsafeBytes { key in
            data.withUnsafeBytes { bytes in
                HMAC(EVP_sha256(), key.baseAddress, Int32(key.count), bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &digest, &length) != nil
            }
        }
        return ok ? digest : nil
    }

    /// Whether two codes are equal, in time that does not depend on where they differ.
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && CRYPTO_memcmp(a, b, a.count) == 0
    }
}

/// Random bytes from OpenSSL's generator (tickets, cursors of a new epoch).
public enum SecureRandom {
    /// `count` random bytes, or nil if the generator fails.
    public static func bytes(_ count: Int) -> [UInt8]? {
        var random = [UInt8](repeating: 0, count: count)
        return RAND_bytes(&random, Int32(count)) == 1 ? random : nil
    }
}
