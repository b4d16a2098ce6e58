import DeltacastWire

/// libFuzzer entry point: any bytes as client frames (the first byte picks whether
/// permessage-deflate was agreed), fed whole and then in two halves, give the same messages or
/// the same close code; never a crash, a hang, or a message past the limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocket(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let deflate = data[0] & 1 == 1 ? PerMessageDeflate.Parameters() : nil
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let limit = 4096
    func run(_ pieces: [ArraySlice<UInt8>]) -> [String] {
        var decoder = WebSocketFrameDecoder(role: .server, maximumMessage: limit, deflate: deflate)
        var events: [String] = []
        for piece in pieces {
            decoder.append(piece)
            do {
                while let event = try decoder.next() {
                    switch event {
                    case .message(let opcode, let payload):
                        precondition(payload.count <= limit, "a message past the limit")
                        if opcode == .text { precondition(String(validating: payload, as: UTF8.self) != nil, "invalid UTF-8 passed") }
                        events.append("\(opcode) \(payload.count) \(payload.reduce(0) { $0 &+ Int($1) })")
                    case .ping(let payload): events.append("ping \(payload.count)")
                    case .pong(let payload): events.append("pong \(payload.count)")
                    case .close(let code, let reason): events.append("close \(code ?? 0) \(reason)")
                    }
                }
            } catch {
                events.append("error \((error as? WebSocketError)?.code ?? 0)")
                return events
            }
        }
        return events
    }
    let whole = run([bytes[...]])
    let split = run([bytes[..<(bytes.count / 2)], bytes[(bytes.count / 2)...]])
    precondition(whole == split, "a split changed the outcome: \(whole) vs \(split)")
    return 0
}
