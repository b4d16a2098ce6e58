/// Server-Sent Events framing (WHATWG HTML §9.2). Lines end in LF.
public enum ServerSentEvents {
    /// One event: `id:`, `event:`, then one `data:` line per line of `data` (split at CRLF,
    /// LF or CR, as a browser would join them back with LF), then a blank line.
    public static func event(id: String? = nil, event: String? = nil, data: some Collection<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(data.count + 64)
        if let id { output += Array("id: ".utf8); output += sanitized(id); output.append(0x0A) }
        if let event { output += Array("event: ".utf8); output += sanitized(event); output.append(0x0A) }
        output += dataLines(data)
        output.append(0x0A)
        return output
    }

    /// The `data:` lines alone (each ending in LF, no blank line after).
    public static func dataLines(_ data: some Collection<UInt8>) -> [UInt8] {
        var output: [UInt8] = Array("data: ".utf8)
        output.reserveCapacity(data.count + 8)
        var previousCR = false
        for byte in data {
            if byte == 0x0A && previousCR { previousCR = false; continue }
            previousCR = byte == 0x0D
            if byte == 0x0A || byte == 0x0D {
                output += Array("\ndata: ".utf8)
            } else {
                output.append(byte)
            }
        }
        output.append(0x0A)
        return output
    }

    /// A comment line (heartbeat); the client ignores it.
    public static func comment(_ text: String) -> [UInt8] { Array(": \(text)\n\n".utf8) }

    /// The reconnection delay hint.
    public static func retry(milliseconds: Int) -> [UInt8] { Array("retry: \(milliseconds)\n\n".utf8) }

    /// A field value with CR and LF removed (they would end the field).
    private static func sanitized(_ text: String) -> [UInt8] { Array(text.utf8).filter { $0 != 0x0A && $0 != 0x0D } }
}
