import DeltacastWire

/// libFuzzer entry point: any bytes, fed whole and then in two halves, give the same events
/// or the same error, never a crash, a hang, or a buffer beyond the limits.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let limits = HTTPRequestParser.Limits(maximumRequestLine: 256, maximumHeaderBytes: 512, maximumHeaderCount: 16, maximumBody: 1024)
    func run(_ pieces: [ArraySlice<UInt8>]) -> [String] {
        var parser = HTTPRequestParser(limits: limits)
        var events: [String] = []
        var body: [UInt8] = []
        for piece in pieces {
            parser.append(piece)
            do {
                while let event = try parser.next() {
                    switch event {
                    case .body(let chunk): body += chunk
                    case .head(let head): events.append("head \(head.method) \(head.target) \(head.headers.count)")
                    case .end: events.append("end \(body.count)"); body = []
                    }
                }
            } catch {
                events.append("error \(error.status)")
                return events
            }
            precondition(parser.bufferedByteCount <= size, "buffer grew past its input")
        }
        return events
    }
    let whole = run([bytes[...]])
    let split = run([bytes[..<(size / 2)], bytes[(size / 2)...]])
    precondition(whole == split, "a split changed the outcome: \(whole) vs \(split)")
    return 0
}
