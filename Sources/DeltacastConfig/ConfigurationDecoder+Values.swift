/// Typed values from YAML nodes (strings, integers in a range, durations, sizes, URLs...), each
/// failing with the node's location and what was expected.
extension ConfigurationDecoder {
    /// A mapping's entries by key, after refusing keys the section does not have.
    mutating func mapping(_ node: YAMLNode, section: String, what: String) -> [String: YAMLNode.Entry]? {
        guard case .mapping(let entries) = node.content else {
            fail("expected a mapping for \(what), found \(node.kindDescription)", at: node.location)
            return nil
        }
        let allowed = ConfigurationReference.keyNames(in: section)
        var result: [String: YAMLNode.Entry] = [:]
        for entry in entries {
            if allowed.contains(entry.key) {
                result[entry.key] = entry
            } else {
                let place = section.isEmpty ? "at the top level" : section == "endpoints[]" ? "in endpoint" : "in '\(section)'"
                var message = "unknown key '\(entry.key)' \(place)"
                if let suggestion = closest(entry.key, among: allowed) { message += "; did you mean '\(suggestion)'?" }
                fail(message, at: entry.keyLocation)
            }
        }
        return result
    }

    func mapping(_ node: YAMLNode) -> [String: YAMLNode.Entry]? {
        guard case .mapping(let entries) = node.content else { return nil }
        return Dictionary(entries.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
    }

    mutating func string(_ node: YAMLNode) -> String? {
        guard case .scalar(let text, _) = node.content, !node.isNull else {
            fail("expected a string, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return text
    }

    mutating func integer(_ node: YAMLNode, range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let text, _) = node.content, !node.isNull else {
            fail("expected an integer, found \(node.kindDescription)", at: node.location)
            return nil
        }
        guard let value = Int(text.replacingUnderscores()) else {
            fail("expected an integer, found '\(text)'", at: node.location)
            return nil
        }
        guard range.contains(value) else {
            fail("\(value) is out of range; expected \(range.lowerBound)...\(range.upperBound)", at: node.location)
            return nil
        }
        return value
    }

    mutating func boolean(_ node: YAMLNode) -> Bool? {
        if case .scalar(let text, _) = node.content {
            switch text {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        fail("expected true or false, found \(describe(node))", at: node.location)
        return nil
    }

    mutating func duration(_ node: YAMLNode, positive: Bool) -> Duration? {
        guard case .scalar(let text, _) = node.content, !node.isNull, let value = parseDuration(text) else {
            fail("invalid duration \(describe(node)); expected a number and a unit: ms, s, m or h (e.g. 250ms, 5s, 2m, 1h)", at: node.location)
            return nil
        }
        if positive && value == .zero {
            fail("duration must be greater than zero", at: node.location)
            return nil
        }
        return value
    }

    mutating func size(_ node: YAMLNode) -> Int? {
        guard case .scalar(let text, _) = node.content, !node.isNull, let value = parseSize(text) else {
            fail("invalid size \(describe(node)); expected a number and a unit: B, KiB, MiB or GiB (e.g. 512B, 64KiB, 8MiB)", at: node.location)
            return nil
        }
        if value == 0 {
            fail("size must be greater than zero", at: node.location)
            return nil
        }
        return value
    }

    mutating func enumeration<E: RawRepresentable & CaseIterable>(_ node: YAMLNode, _ type: E.Type) -> E? where E.RawValue == String {
        let names = E.allCases.map(\.rawValue)
        if case .scalar(let text, _) = node.content, let value = E(rawValue: text) { return value }
        var message = "invalid value \(describe(node)); expected one of: \(names.joined(separator: ", "))"
        if case .scalar(let text, _) = node.content, let suggestion = closest(text, among: names) {
            message += "; did you mean '\(suggestion)'?"
        }
        fail(message, at: node.location)
        return nil
    }

    mutating func enumList<E: RawRepresentable & CaseIterable & Equatable>(_ node: YAMLNode, _ type: E.Type) -> [E]? where E.RawValue == String {
        guard case .sequence(let items) = node.content else {
            fail("expected a list such as [\(E.allCases.map(\.rawValue).joined(separator: ", "))], found \(node.kindDescription)", at: node.location)
            return nil
        }
        var result: [E] = []
        for item in items {
            guard let value = enumeration(item, type) else { continue }
            if result.contains(value) {
                fail("'\(value.rawValue)' is listed twice", at: item.location)
            } else {
                result.append(value)
            }
        }
        return result
    }

    mutating func stringList(_ node: YAMLNode) -> [(String, SourceLocation)]? {
        guard case .sequence(let items) = node.content else {
            fail("expected a list, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return items.compactMap { item in string(item).map { ($0, item.location) } }
    }

    mutating func stringMapping(_ node: YAMLNode) -> [(String, String, SourceLocation)]? {
        guard case .mapping(let entries) = node.content else {
            fail("expected a mapping, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return entries.compactMap { entry in string(entry.value).map { (entry.key, $0, entry.keyLocation) } }
    }

    mutating func headers(_ node: YAMLNode) -> [(name: String, value: String)] {
        guard let pairs = stringMapping(node) else { return [] }
        var result: [(name: String, value: String)] = []
        for (name, value, location) in pairs {
            if !isToken(name) { fail("invalid header name '\(name)'", at: location); continue }
            if value.contains("\r") || value.contains("\n") || value.contains("\0") {
                fail("header '\(name)' has a line break or NUL in its value", at: location)
                continue
            }
            result.append((name, value))
        }
        return result
    }

    mutating func hostPort(_ node: YAMLNode) -> HostPort? {
        guard case .scalar(let text, _) = node.content, let value = parseHostPort(text) else {
            fail("invalid listen address \(describe(node)); expected host:port such as 127.0.0.1:8080 or [::1]:8080", at: node.location)
            return nil
        }
        return value
    }

    mutating func url(_ node: YAMLNode) -> URLValue? {
        guard case .scalar(let text, _) = node.content, let value = parseURL(text) else {
            fail("invalid URL \(describe(node)); expected http://host[:port][/path] or https://...", at: node.location)
            return nil
        }
        return value
    }

    func describe(_ node: YAMLNode) -> String {
        if case .scalar(let text, _) = node.content, !node.isNull { return "'\(text)'" }
        return node.kindDescription
    }
}

