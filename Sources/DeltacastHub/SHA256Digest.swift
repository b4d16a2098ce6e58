import COpenSSL
import DeltacastWire

/// SHA-256 through OpenSSL, as lowercase hex: the `digest` of snapshots and patches.
enum SHA256Digest {
    static func hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        _ = bytes.withUnsafeBytes { SHA256($0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count, &digest) }
        return Hex.encode(digest)
    }
}
