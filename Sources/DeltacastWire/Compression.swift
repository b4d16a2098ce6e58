import CZlib

/// Raw-deflate compressor for permessage-deflate. With `server_no_context_takeover` every
/// message is compressed alone (the stream is reset after each), so one compressor serves a
/// whole event loop and its output can be shared by every subscriber.
public final class Deflater {
    private let stream: UnsafeMutablePointer<z_stream>
    /// The window the output may refer back across (9...15).
    public let windowBits: Int
    /// zlib's compression level (1 fastest ... 9 smallest).
    public let level: Int

    /// A compressor whose output a peer with a `windowBits` window can inflate, at `level`:
    /// zlib's default 6 suits a frame compressed once and shared by every subscriber; a
    /// message compressed for one client alone is better served by 1, which on 64 KiB of text
    /// takes about a third of the time for output about 15 % larger (on messages of a few
    /// hundred bytes the two barely differ).
    /// - Precondition: `windowBits` in 9...15 (zlib's raw deflate cannot do 8), `level` in 1...9.
    public init(windowBits: Int = 15, level: Int = 6) {
        precondition((9...15).contains(windowBits) && (1...9).contains(level))
        self.windowBits = windowBits
        self.level = level
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // memLevel 8 is zlib's default.
        let result = deltacast_deflateInit2(stream, Int32(level), -Int32(windowBits), 8)
        precondition(result == Z_OK, "deflateInit2 failed: \(result)")
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// One message's compressed payload (the final `00 00 FF FF` of the sync flush removed,
    /// RFC 7692 §7.2.1). The stream is reset afterwards.
    public func compress(_ message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(deflateBound(stream, uLong(message.count))) + 16)
        var produced = 0
        message.withUnsafeBufferPointer { input in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.pointee.avail_in = uInt(input.count)
            while true {
                if produced == output.count { output += [UInt8](repeating: 0, count: output.count) }
                let room = output.count - produced
                let status = output.withUnsafeMutableBufferPointer { buffer -> Int32 in
                    stream.pointee.next_out = buffer.baseAddress! + produced
                    stream.pointee.avail_out = uInt(room)
                    return deflate(stream, Z_SYNC_FLUSH)
                }
                produced += room - Int(stream.pointee.avail_out)
                // Done when the flush fit: input consumed and output space left over.
                if status != Z_OK && status != Z_BUF_ERROR { break }
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { break }
            }
        }
        deflateReset(stream)
        output.removeSubrange(produced...)
        let end = output.count
        if end >= 4 && output[end - 4] == 0x00 && output[end - 3] == 0x00 && output[end - 2] == 0xFF && output[end - 1] == 0xFF {
            output.removeLast(4)
        }
        if output.isEmpty { output = [0x00] }  // an empty message compresses to one empty block
        return output
    }
}

/// Raw-inflate decompressor for permessage-deflate messages from one client, with a bound on
/// the decompressed size (a small compressed frame must not expand into gigabytes).
public final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>

    /// The outcome of inflating a message's bytes.
    public enum InflateError: Error, Equatable {
        /// The output passed the limit.
        case tooLarge
        /// The input is not valid deflate data.
        case corrupt
    }

    /// A decompressor for a peer compressing with up to `windowBits` (8...15; 8 is read as 9,
    /// which zlib requires and which accepts every 8-bit stream).
    public init(windowBits: Int = 15) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let result = deltacast_inflateInit2(stream, -Int32(max(9, windowBits)))
        precondition(result == Z_OK, "inflateInit2 failed: \(result)")
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Inflates `input` (part of one message) and appends it to `output`, which must stay
    /// within `limit` bytes. Call with `endOfMessage` for the message's last fragment: the
    /// `00 00 FF FF` tail removed by the sender is put back.
    public func inflate(_ input: some Collection<UInt8>, endOfMessage: Bool, into output: inout [UInt8], limit: Int) throws(InflateError) {
        // A message whose deflate data ended with a final (BFINAL) block: nothing but the
        // tail appended here may follow within the message.
        if finished {
            guard input.isEmpty else { throw .corrupt }
            if endOfMessage { inflateReset(stream); finished = false }
            return
        }
        var bytes = Array(input)
        if endOfMessage { bytes += [0x00, 0x00, 0xFF, 0xFF] }
        if bytes.isEmpty { return }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var failure: InflateError?
        bytes.withUnsafeBufferPointer { source in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
            stream.pointee.avail_in = uInt(source.count)
            while failure == nil {
                let status = chunk.withUnsafeMutableBufferPointer { buffer -> Int32 in
                    stream.pointee.next_out = buffer.baseAddress
                    stream.pointee.avail_out = uInt(buffer.count)
                    return CZlib.inflate(stream, Z_SYNC_FLUSH)
                }
                let produced = chunk.count - Int(stream.pointee.avail_out)
                if produced > 0 {
                    if output.count + produced > limit { failure = .tooLarge; break }
                    output += chunk[0..<produced]
                }
                if status == Z_STREAM_END {
                    // Bytes left over are allowed only if they are (part of) the appended tail.
                    if Int(stream.pointee.avail_in) > (endOfMessage ? 4 : 0) { failure = .corrupt; break }
                    if endOfMessage { inflateReset(stream) } else { finished = true }
                    break
                }
                if status == Z_NEED_DICT || status == Z_DATA_ERROR || status == Z_MEM_ERROR || status == Z_STREAM_ERROR {
                    failure = .corrupt
                    break
                }
                if status == Z_BUF_ERROR || (stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0) { break }
            }
        }
        if let failure { throw failure }
    }

    /// Forgets the sliding window (when the client uses `client_no_context_takeover`).
    public func reset() { inflateReset(stream); finished = false }

    private var finished = false
}
