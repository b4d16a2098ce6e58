import DeltacastConfig

/// libFuzzer entry point for the `allow` expression parser. Any text parses or gives an error
/// with an offset inside the text; whatever parses prints (`description`, what `deltacast
/// check` shows) as an expression that parses back to the same rule.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAllow(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let rule = try AuthorizationRule.parse(text)
        let printed = rule.description
        do {
            let again = try AuthorizationRule.parse(printed)
            precondition(again == rule, "\(printed) parses to a different rule")
            precondition(again.description == printed, "printing is not stable")
        } catch {
            // A rule longer than the limit once printed (parentheses added) is the one allowed miss.
            precondition(printed.count > 1000, "the printed rule \(printed) does not parse: \(error.message)")
        }
    } catch {
        precondition(error.offset >= 0 && error.offset <= max(text.count, 1000), "an error offset outside the text")
        precondition(!error.message.isEmpty, "an error without a message")
    }
    return 0
}
