import DeltacastJSON

/// libFuzzer entry point for JSON Patch and JSON Merge Patch. The input is two JSON documents
/// separated by a NUL byte (or cut in half when there is none). For every pair that parses:
/// - the diff from one to the other, by position and by `id` key, applies exactly, and so does
///   its serialized form read back as a patch;
/// - the merge-patch diff, when one exists, applies exactly;
/// - the second document applied as a patch to the first either gives a document or a
///   located error, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPatch(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let cut = bytes.firstIndex(of: 0) ?? size / 2
    let limits = JSONParseLimits(maximumDepth: 64)
    guard let old = try? JSONParser.parse(Array(bytes[..<cut]), limits: limits),
          let new = try? JSONParser.parse(Array(bytes[min(cut + 1, size)...]), limits: limits) else { return 0 }
    let keyed = DiffOptions(arrayKeys: [(try! JSONPointerPattern("/*"), "id"), (try! JSONPointerPattern("/items"), "id")])
    for options in [DiffOptions(), keyed] {
        let operations = JSONDiff.diff(old, new, options: options).operations
        do {
            let patched = try JSONPatch.apply(operations, to: old)
            precondition(patched == new, "the diff does not apply")
            let reread = try JSONPatch.operations(from: try JSONParser.parse(JSONPatch.serialized(operations)))
            precondition(reread == operations, "a serialized patch reads back differently")
        } catch {
            preconditionFailure("a diff's own patch failed: \(error)")
        }
    }
    if let merge = JSONMergePatch.diff(old, new) {
        precondition(JSONMergePatch.apply(merge, to: old) == new, "the merge diff does not apply")
    }
    do {
        _ = try JSONPatch.apply(try JSONPatch.operations(from: new), to: old)
    } catch {
        precondition(!error.message.isEmpty, "an error without a message")
    }
    return 0
}
