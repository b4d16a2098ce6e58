/// An endpoint's `allow:` expression: a tiny language that binds token claims to path
/// parameters and query values, evaluated on every subscribe and every plain GET.
///
/// ```
/// expr     := or
/// or       := and ("||" and)*
/// and      := unary ("&&" unary)*
/// unary    := "!" unary | "(" expr ")" | compare
/// compare  := operand (("==" | "!=" | "in") operand)?
/// operand  := reference | "text" | 'text' | number | true | false | null
/// reference:= (params | claims | query) ("." name | "[" "text" "]")*
/// ```
/// `a in b` is true when the array `b` holds `a`, or when the string `b` is a space-separated
/// list that holds `a` (an OAuth `scope` claim). A lone operand is true when it is `true`. A
/// missing claim or parameter is `null`. A string equals a number when it spells that number
/// (`params.user == claims.uid` works whether `uid` is `"42"` or `42`).
public indirect enum AuthorizationRule: Sendable, Hashable, CustomStringConvertible {
    /// A value the rule reads or writes literally.
    public enum Operand: Sendable, Hashable {
        /// `params.NAME`, `claims.a.b`, `query.NAME`: the root and the member path.
        case reference(root: Root, path: [String])
        /// A string, number (its text), boolean or null literal.
        case string(String), number(String), bool(Bool), null
    }
    /// Where a reference reads from.
    public enum Root: String, Sendable, Hashable, CaseIterable {
        case params, claims, query
    }
    /// A comparison operator.
    public enum Comparison: String, Sendable, Hashable {
        case equal = "==", notEqual = "!=", contains = "in"
    }

    case compare(Operand, Comparison, Operand)
    case truthy(Operand)
    case not(AuthorizationRule)
    case and(AuthorizationRule, AuthorizationRule)
    case or(AuthorizationRule, AuthorizationRule)

    /// The expression, normalised: parentheses only where the tree needs them (`&&` binds
    /// tighter than `||`, both group to the left), so the text parses back to the same rule
    /// within the same nesting limit as the text it came from.
    public var description: String {
        switch self {
        case .compare(let a, let op, let b): "\(Self.text(a)) \(op.rawValue) \(Self.text(b))"
        case .truthy(let a): Self.text(a)
        case .not(let inner): "!" + inner.grouped(unless: inner.precedence == 2)
        case .and(let a, let b): a.grouped(unless: a.precedence >= 1) + " && " + b.grouped(unless: b.precedence == 2)
        case .or(let a, let b): a.description + " || " + b.grouped(unless: b.precedence >= 1)
        }
    }

    /// 0 for `||`, 1 for `&&`, 2 for what binds tightest (a comparison, a value, a negation).
    private var precedence: Int {
        switch self {
        case .or: 0
        case .and: 1
        case .compare, .truthy, .not: 2
        }
    }

    private func grouped(unless bare: Bool) -> String { bare ? description : "(\(description))" }

    private static func text(_ operand: Operand) -> String {
        switch operand {
        case .reference(let root, let path):
            path.reduce(root.rawValue) { text, name in
                !name.isEmpty && name.allSatisfy(RuleParser.isNameCharacter) ? text + "." + name : text + "[" + quoted(name) + "]"
            }
        case .string(let text): quoted(text)
        case .number(let text): text
        case .bool(let value): "\(value)"
        case .null: "null"
        }
    }

    private static func quoted(_ text: String) -> String {
        "\"" + text.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
    }

    /// Every reference to a path parameter, so the decoder can check the endpoint has it.
    public var parameterNames: [String] {
        func names(_ operand: Operand) -> [String] {
            if case .reference(.params, let path) = operand, let first = path.first { return [first] }
            return []
        }
        switch self {
        case .compare(let a, _, let b): return names(a) + names(b)
        case .truthy(let a): return names(a)
        case .not(let inner): return inner.parameterNames
        case .and(let a, let b), .or(let a, let b): return a.parameterNames + b.parameterNames
        }
    }

    /// Why an expression does not parse, and at which character (0-based) of it.
    public struct ParseError: Error, Sendable, Equatable {
        /// Offset in characters from the start of the expression.
        public var offset: Int
        /// What was expected.
        public var message: String
    }

    /// Parses an expression (at most 1,000 characters and 32 levels deep).
    public static func parse(_ text: String) throws(ParseError) -> AuthorizationRule {
        guard text.count <= 1000 else { throw ParseError(offset: 1000, message: "expression is longer than 1000 characters") }
        var parser = RuleParser(characters: Array(text))
        let rule = try parser.expression(depth: 0)
        parser.skipSpaces()
        if parser.position < parser.characters.count {
            throw ParseError(offset: parser.position, message: "unexpected '\(parser.characters[parser.position])'; expected &&, || or the end of the expression")
        }
        return rule
    }
}

private struct RuleParser {
    let characters: [Character]
    var position = 0

    mutating func skipSpaces() {
        while position < characters.count, characters[position] == " " || characters[position] == "\t" { position += 1 }
    }

    private mutating func take(_ token: String) -> Bool {
        skipSpaces()
        let tokenCharacters = Array(token)
        guard position + tokenCharacters.count <= characters.count,
              Array(characters[position..<position + tokenCharacters.count]) == tokenCharacters else { return false }
        // A word operator must not run into a name (`inside` is not `in` + `side`).
        if token == "in", position + 2 < characters.count, Self.isNameCharacter(characters[position + 2]) { return false }
        position += tokenCharacters.count
        return true
    }

    private func fail(_ message: String) -> AuthorizationRule.ParseError {
        AuthorizationRule.ParseError(offset: position, message: message)
    }

    mutating func expression(depth: Int) throws(AuthorizationRule.ParseError) -> AuthorizationRule {
        guard depth < 32 else { throw fail("expression nests deeper than 32 levels") }
        var left = try conjunction(depth: depth)
        while take("||") { left = .or(left, try conjunction(depth: depth)) }
        return left
    }

    private mutating func conjunction(depth: Int) throws(AuthorizationRule.ParseError) -> AuthorizationRule {
        var left = try unary(depth: depth)
        while take("&&") { left = .and(left, try unary(depth: depth)) }
        return left
    }

    private mutating func unary(depth: Int) throws(AuthorizationRule.ParseError) -> AuthorizationRule {
        skipSpaces()
        if position < characters.count, characters[position] == "!", position + 1 >= characters.count || characters[position + 1] != "=" {
            position += 1
            guard depth + 1 < 32 else { throw fail("expression nests deeper than 32 levels") }
            return .not(try unary(depth: depth + 1))
        }
        if take("(") {
            let inner = try expression(depth: depth + 1)
            guard take(")") else { throw fail("expected ')'") }
            return inner
        }
        let left = try operand()
        for op in [AuthorizationRule.Comparison.equal, .notEqual, .contains] where take(op.rawValue) {
            return .compare(left, op, try operand())
        }
        skipSpaces()
        if position < characters.count, characters[position] == "=" {
            throw fail("'=' is not an operator; use '==' to compare")
        }
        return .truthy(left)
    }

    static func isNameCharacter(_ character: Character) -> Bool {
        character == "_" || character == "-" || (character.isASCII && (character.isLetter || character.isNumber))
    }

    private mutating func operand() throws(AuthorizationRule.ParseError) -> AuthorizationRule.Operand {
        skipSpaces()
        guard position < characters.count else {
            throw fail("expected a value (params.NAME, claims.NAME, query.NAME, a string or a number), found the end of the expression")
        }
        let first = characters[position]
        if first == "\"" || first == "'" { return .string(try quoted()) }
        if first.isNumber || first == "-" {
            let start = position
            position += 1
            while position < characters.count, characters[position].isNumber || characters[position] == "." { position += 1 }
            let text = String(characters[start..<position])
            guard Double(text) != nil else { position = start; throw fail("invalid number '\(text)'") }
            return .number(text)
        }
        let start = position
        while position < characters.count, Self.isNameCharacter(characters[position]) { position += 1 }
        let word = String(characters[start..<position])
        switch word {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null": return .null
        case "":
            throw fail("expected a value (params.NAME, claims.NAME, query.NAME, a string or a number), found '\(first)'")
        default:
            break
        }
        guard let root = AuthorizationRule.Root(rawValue: word) else {
            position = start
            throw fail("unknown name '\(word)'; a reference starts with params., claims. or query.")
        }
        var path: [String] = []
        while position < characters.count {
            if characters[position] == "." {
                position += 1
                let nameStart = position
                while position < characters.count, Self.isNameCharacter(characters[position]) { position += 1 }
                guard position > nameStart else { throw fail("expected a name after '.'") }
                path.append(String(characters[nameStart..<position]))
            } else if characters[position] == "[" {
                position += 1
                guard position < characters.count, characters[position] == "\"" || characters[position] == "'" else {
                    throw fail("expected a quoted name inside [ ], e.g. claims[\"https://example.com/roles\"]")
                }
                path.append(try quoted())
                guard position < characters.count, characters[position] == "]" else { throw fail("expected ']'") }
                position += 1
            } else {
                break
            }
        }
        guard !path.isEmpty else { throw fail("'\(word)' needs a member, e.g. \(word).\(root == .claims ? "sub" : "user")") }
        if root != .claims && path.count > 1 { throw fail("\(word).\(path[0]) is a string; it has no members") }
        return .reference(root: root, path: path)
    }

    private mutating func quoted() throws(AuthorizationRule.ParseError) -> String {
        let quote = characters[position]
        let start = position
        position += 1
        var text = ""
        while position < characters.count, characters[position] != quote {
            if characters[position] == "\\", position + 1 < characters.count { position += 1 }
            text.append(characters[position])
            position += 1
        }
        guard position < characters.count else { position = start; throw fail("unterminated string") }
        position += 1
        return text
    }
}

/// A token-bucket rate: a burst of up to `count`, refilled at `count` per `period`.
public struct Rate: Sendable, Hashable, CustomStringConvertible {
    /// Tokens per period, and the burst size.
    public var count: Int
    /// The refill period.
    public var period: Duration
    /// Creates a rate.
    public init(count: Int, period: Duration) { self.count = count; self.period = period }
    /// `20/s`, `30/m`, `100/h`.
    public var description: String {
        let unit = period == .seconds(1) ? "s" : period == .seconds(60) ? "m" : "h"
        return "\(count)/\(unit)"
    }
}

/// Parses `20/s`, `30/m` or `100/h` (a positive integer per second, minute or hour).
public func parseRate(_ text: String) -> Rate? {
    let parts = text.split(separator: "/")
    guard parts.count == 2, let count = Int(parts[0]), count > 0, count <= 100_000_000 else { return nil }
    switch parts[1] {
    case "s": return Rate(count: count, period: .seconds(1))
    case "m": return Rate(count: count, period: .seconds(60))
    case "h": return Rate(count: count, period: .seconds(3600))
    default: return nil
    }
}
