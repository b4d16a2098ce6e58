import COpenSSL

/// SHA-256 through OpenSSL, as lowercase hex: the `digest` of snapshots and patches.
enum SHA256Digest {
    static func hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        _ = bytes.withUnsafeBytes { SHA256($0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count, &digest) }
        let hexDigits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in digest { out += [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]] }
        return String(decoding: out, as: UTF8.self)
    }
}
