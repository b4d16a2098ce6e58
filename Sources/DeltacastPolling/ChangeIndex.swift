import DeltacastConfig
import DeltacastJSON

/// What one read of an upstream change index said (`changes:` of an endpoint), as a value: the
/// topics it names and its next cursor, or why it cannot be used.
struct ChangeIndexAnswer: Equatable {
    /// The client paths it names (values of the endpoint's parameter already made into paths).
    var paths: [String]
    /// The next cursor, when the endpoint has one.
    var cursor: String?

    /// Why an answer cannot be used; the label is the metric's `reason`.
    enum Failure: Error, Equatable {
        case garbage(String)
        case cursorBackwards(from: String, to: String)

        var label: String {
            switch self {
            case .garbage: "garbage"
            case .cursorBackwards: "cursor_backwards"
            }
        }

        var message: String {
            switch self {
            case .garbage(let why): why
            case .cursorBackwards(let from, let to): "the change index's cursor went back from \(from) to \(to)"
            }
        }
    }

    /// Reads `body` as `index` describes it for `endpoint`; `previous` is the cursor sent.
    static func read(_ body: [UInt8], index: Configuration.ChangeIndex, endpoint: Configuration.Endpoint, previous: String) -> Result<ChangeIndexAnswer, Failure> {
        guard let document = try? JSONParser.parse(body) else { return .failure(.garbage("the change index's answer is not JSON")) }
        var cursor: String?
        if let pointer = index.cursor {
            switch value(at: pointer, in: document) {
            case .string(let text)?: cursor = text
            case .number(let number)?: cursor = number.intValue.map(String.init) ?? "\(number.doubleValue)"
            default: return .failure(.garbage("the change index's answer has no cursor at \(pointer)"))
            }
            // A cursor that is a number may only grow; another is taken as it comes.
            if let new = cursor, let before = Int64(previous), let after = Int64(new), after < before {
                return .failure(.cursorBackwards(from: previous, to: new))
            }
        }
        let parameters = endpoint.path.segments.compactMap { if case .parameter(let name) = $0 { name } else { nil } }
        var paths: [String] = []
        for found in values(matching: index.topics, in: document) {
            let text: String
            switch found {
            case .string(let string): text = string
            case .number(let number): text = number.intValue.map(String.init) ?? "\(number.doubleValue)"
            default: continue
            }
            if text.hasPrefix("/") {
                paths.append(text)
            } else if parameters.count == 1, !text.isEmpty, !text.contains("/") {
                paths.append(endpoint.path.segments.map {
                    switch $0 {
                    case .literal(let literal): "/" + literal
                    case .parameter: "/" + text
                    }
                }.joined())
            }
        }
        return .success(ChangeIndexAnswer(paths: paths, cursor: cursor))
    }

    /// A pointer token with `~1` and `~0` undone (RFC 6901 §4).
    static func unescaped(_ token: Substring) -> String {
        var out = ""
        var tilde = false
        for character in token {
            if tilde {
                out.append(character == "1" ? "/" : character == "0" ? "~" : character)
                tilde = false
            } else if character == "~" {
                tilde = true
            } else {
                out.append(character)
            }
        }
        return tilde ? out + "~" : out
    }

    /// The value at a JSON pointer (RFC 6901), if any.
    static func value(at pointer: String, in document: JSONValue) -> JSONValue? {
        values(matching: pointer, in: document, wildcard: false).first
    }

    /// Every value a pointer pattern reaches; `*` stands for any array element or object member.
    static func values(matching pattern: String, in document: JSONValue, wildcard: Bool = true) -> [JSONValue] {
        guard !pattern.isEmpty else { return [document] }
        let tokens = pattern.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(unescaped)
        var current = [document]
        for token in tokens {
            var next: [JSONValue] = []
            for value in current {
                switch value {
                case .array(let elements):
                    if wildcard && token == "*" { next += elements } else if let index = Int(token), elements.indices.contains(index) { next.append(elements[index]) }
                case .object(let object):
                    if wildcard && token == "*" { next += object.map(\.value) } else if let member = object[token] { next.append(member) }
                default:
                    break
                }
            }
            current = next
            if current.isEmpty { break }
        }
        return current
    }
}

extension String {
    /// Every `target` replaced by `replacement` (Foundation is not imported here).
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty, contains(target) else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
