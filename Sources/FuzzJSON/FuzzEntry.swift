import DeltacastJSON

/// libFuzzer entry point: any bytes must parse or give a located error; whatever parses must
/// serialize byte-stably and diff against a fixed document into a patch that applies exactly,
/// from values and from tapes (``JSONDocument``, the hub's path) alike.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let buffer = UnsafeRawBufferPointer(start: data, count: size)
    do {
        let value = try JSONParser.parse(buffer, limits: .init(maximumDepth: 128))
        let bytes = value.serialized()
        let again = try JSONParser.parse(bytes)
        precondition(again.serialized() == bytes, "serialization is not byte-stable")
        let base: JSONValue = ["items": [["id": 1, "v": "a"], ["id": 2, "v": nil]], "n": 1]
        let options = DiffOptions(arrayKeys: [(try JSONPointerPattern("/items"), "id")])
        let document = try JSONDocument(parsing: Array(buffer), limits: .init(maximumDepth: 128))
        let baseDocument = try JSONDocument(parsing: base.serialized())
        precondition(document.value == value, "the tape and the parser disagree")
        for (old, new, oldDocument, newDocument) in [(base, value, baseDocument, document), (value, base, document, baseDocument)] {
            let patch = JSONDiff.diff(old, new, options: options).operations
            let patched = try JSONPatch.apply(patch, to: old)
            precondition(patched == new, "diff does not apply")
            let tapePatch = JSONDiff.diff(oldDocument, newDocument, options: options).operations
            let tapePatched = try JSONPatch.apply(tapePatch, to: old)
            precondition(tapePatched == new, "the tape diff does not apply")
        }
    } catch let error as JSONParseError {
        precondition(error.offset <= size && error.line >= 1 && error.column >= 1, "error without a location")
    } catch {
        preconditionFailure("unexpected error \(error)")
    }
    return 0
}
