import DeltacastCluster

/// libFuzzer entry point: any bytes, fed whole and then in two halves, give the same values or
/// the same error, never a crash, a hang, or a buffer beyond the input; each value re-encodes
/// to bytes that decode to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let limits = RESPDecoder.Limits(maximumBulk: 4096, maximumElements: 256, maximumDepth: 4, maximumLine: 512)
    func run(_ pieces: [ArraySlice<UInt8>]) -> [String] {
        var decoder = RESPDecoder(limits: limits)
        var values: [String] = []
        for piece in pieces {
            decoder.append(piece)
            do {
                while let value = try decoder.next() {
                    // Simple strings are text: an invalid UTF-8 byte becomes U+FFFD (3 bytes), so
                    // the re-encoded line may be longer than the limit the input met.
                    var roomy = limits
                    roomy.maximumLine = 4 * limits.maximumLine
                    var again = RESPDecoder(limits: roomy)
                    again.append(RESPEncoder.encode(value))
                    precondition((try? again.next()) == value, "\(value) does not survive encoding")
                    values.append("\(value)")
                }
            } catch {
                values.append("error \(error)")
                return values
            }
            precondition(decoder.bufferedByteCount <= size, "buffer grew past its input")
        }
        return values
    }
    let whole = run([bytes[...]])
    let split = run([bytes[..<(size / 2)], bytes[(size / 2)...]])
    precondition(whole == split, "a split changed the outcome: \(whole) vs \(split)")
    return 0
}
