import DeltacastWire

/// libFuzzer entry point for cursors (`EPOCH-SEQ`) and `Last-Event-ID` lists (a cursor per
/// topic, comma-separated, as multiplexed SSE resumes). A cursor that parses prints back to the
/// same text when it was in canonical form and always to a cursor that parses to itself; a
/// list gives one entry per comma-separated piece, each nil or the cursor that piece parses to.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCursor(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let cursor = Cursor(text) {
        precondition(Cursor(cursor.description) == cursor, "\(cursor) does not parse to itself")
        precondition(cursor.seq >= 0 && (4...12).contains(cursor.epoch.count), "an out-of-range cursor")
    }
    let pieces = text.split(separator: ",", omittingEmptySubsequences: false)
    let cursors = Cursor.list(lastEventID: text)
    precondition(cursors.count == (text.isEmpty ? 0 : pieces.count), "a list of the wrong length")
    for (piece, cursor) in zip(pieces, cursors) {
        precondition(cursor == Cursor(piece), "\(piece) parsed differently in a list")
    }
    return 0
}
