/// Parses the YAML subset Deltacast's configuration uses, keeping the source location of every
/// node so later validation can point at the exact line and column.
///
/// Supported: block mappings and sequences (including a mapping that starts on a `- ` line),
/// flow sequences `[a, b]` and flow mappings `{ k: v }` (which may span lines), plain,
/// single-quoted and double-quoted scalars (with YAML's escapes), comments, one optional leading
/// `---`, and `${VAR}` / `${VAR:-default}` interpolation in plain and double-quoted scalars
/// (`$${` writes a literal `${`).
///
/// Refused with a message saying so: tabs in indentation, a second document, block scalars
/// (`|`, `>`), anchors, aliases and tags, complex keys (`? `), directives, quoted scalars that
/// span lines, duplicate keys, nesting deeper than ``maximumDepth``, control characters.
public struct YAMLParser {
    /// Deepest nesting of collections accepted; deeper input is refused, never a stack overflow.
    public static let maximumDepth = 64

    private let file: String
    private let source: [Unicode.Scalar]
    private let environment: [String: String]
    private var position = 0
    private var lineNumber = 1
    private var lineStart = 0
    private var depth = 0

    /// Parses `text` (the contents of `file`).
    ///
    /// - Parameters:
    ///   - text: the document.
    ///   - file: the name errors report.
    ///   - environment: variables for `${VAR}` interpolation.
    /// - Returns: the root node; an empty document is an empty mapping.
    /// - Throws: ``ConfigurationError`` at the first syntax error.
    public static func parse(
        _ text: String, file: String, environment: [String: String]
    ) throws(ConfigurationError) -> YAMLNode {
        var parser = YAMLParser(text: text, file: file, environment: environment)
        return try parser.parseDocument()
    }

    private init(text: String, file: String, environment: [String: String]) {
        var scalars = Array(text.unicodeScalars)
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }
        // CRLF line ends read as LF; the CR is dropped, so columns are unaffected.
        var normalized: [Unicode.Scalar] = []
        normalized.reserveCapacity(scalars.count)
        for (index, scalar) in scalars.enumerated()
        where !(scalar == "\r" && index + 1 < scalars.count && scalars[index + 1] == "\n") {
            normalized.append(scalar)
        }
        self.source = normalized
        self.file = file
        self.environment = environment
    }

    // MARK: Cursor

    private var atEnd: Bool { position >= source.count }
    private var current: Unicode.Scalar? { position < source.count ? source[position] : nil }
    private func peek(_ offset: Int) -> Unicode.Scalar? {
        position + offset < source.count ? source[position + offset] : nil
    }
    private var column: Int { position - lineStart + 1 }
    private var location: SourceLocation { SourceLocation(file: file, line: lineNumber, column: column) }

    private func isBlank(_ scalar: Unicode.Scalar?) -> Bool {
        scalar == nil || scalar == " " || scalar == "\t" || scalar == "\n"
    }

    private mutating func advance() {
        guard let scalar = current else { return }
        position += 1
        if scalar == "\n" {
            lineNumber += 1
            lineStart = position
        }
    }

    /// The text of the line containing `index`.
    private func lineText(containing index: Int) -> String {
        var start = min(index, source.count)
        while start > 0 && source[start - 1] != "\n" { start -= 1 }
        var end = start
        while end < source.count && source[end] != "\n" { end += 1 }
        var text = String.UnicodeScalarView()
        text.append(contentsOf: source[start..<end])
        return String(text)
    }

    private func error(_ message: String, at index: Int? = nil) -> ConfigurationError {
        let index = index ?? position
        var line = 1
        var start = 0
        for i in 0..<min(index, source.count) where source[i] == "\n" {
            line += 1
            start = i + 1
        }
        return ConfigurationError(
            location: SourceLocation(file: file, line: line, column: index - start + 1),
            message: message, sourceLine: lineText(containing: index))
    }


    // MARK: Lines

    private mutating func skipSpaces() {
        while current == " " || current == "\t" { advance() }
    }

    /// Skips trailing spaces and a comment; the line must end there.
    private mutating func finishLine(after what: String) throws(ConfigurationError) {
        skipSpaces()
        if current == "#" {
            while let scalar = current, scalar != "\n" { advance() }
        }
        if let scalar = current, scalar != "\n" {
            throw error("unexpected text after \(what); expected a comment or the end of the line"
                        + (scalar == ":" ? " (quote a value that contains ': ')" : ""))
        }
    }

    /// Moves to the first character of the next line that has content, skipping blank and
    /// comment-only lines. Returns its column, or nil at the end of the document.
    private mutating func nextContentLine() throws(ConfigurationError) -> Int? {
        while true {
            if current == "\n" { advance() }
            if atEnd { return nil }
            // At a line start: measure indentation.
            while current == " " { advance() }
            if current == "\t" {
                throw error("tab character in indentation; indent with spaces only")
            }
            if current == "\n" { continue }
            if atEnd { return nil }
            if current == "#" {
                while let scalar = current, scalar != "\n" { advance() }
                continue
            }
            if column == 1, try isDocumentMarker() { continue }
            return column
        }
    }

    /// Handles `---` and `...` at column 1: one leading `---` is allowed.
    private mutating func isDocumentMarker() throws(ConfigurationError) -> Bool {
        let marker: Unicode.Scalar
        if current == "-" && peek(1) == "-" && peek(2) == "-" && isBlank(peek(3)) {
            marker = "-"
        } else if current == "." && peek(1) == "." && peek(2) == "." && isBlank(peek(3)) {
            marker = "."
        } else {
            return false
        }
        let seenContent = source[0..<position].contains { !isBlank($0) && $0 != "#" }
            && !onlyCommentsBefore(position)
        if marker == "." {
            throw error("document end marker '...' is not supported; a configuration file holds one document")
        }
        if seenContent {
            throw error("multi-document files are not supported; found a second document marker '---'")
        }
        position += 3
        try finishLine(after: "'---'")
        return true
    }

    private func onlyCommentsBefore(_ index: Int) -> Bool {
        var inComment = false
        for scalar in source[0..<index] {
            if scalar == "\n" { inComment = false; continue }
            if inComment || scalar == " " || scalar == "\t" { continue }
            if scalar == "#" { inComment = true; continue }
            return false
        }
        return true
    }

    // MARK: Document

    private mutating func parseDocument() throws(ConfigurationError) -> YAMLNode {
        try checkCharacters()
        guard let firstColumn = try nextContentLine() else {
            return YAMLNode(content: .mapping([]), location: SourceLocation(file: file, line: 1, column: 1))
        }
        let root = try parseBlockNode(column: firstColumn)
        if let column = currentColumnIfContent() {
            if column < firstColumn {
                throw error("unexpected indentation: this line is less indented than the document's first line")
            }
            throw error("unexpected content; expected the end of the document")
        }
        return root
    }

    private func currentColumnIfContent() -> Int? { atEnd ? nil : column }

    private func checkCharacters() throws(ConfigurationError) {
        for (index, scalar) in source.enumerated() {
            let value = scalar.value
            let allowed = value == 0x09 || value == 0x0A || (value >= 0x20 && value != 0x7F)
                && !(value >= 0x80 && value <= 0x9F) && value != 0xFFFE && value != 0xFFFF
            if !allowed {
                let hex = String(value, radix: 16, uppercase: true)
                throw error("control character U+\(String(repeating: "0", count: max(0, 4 - hex.count)))\(hex) is not allowed in a configuration file", at: index)
            }
        }
    }

    // MARK: Block nodes

    /// Parses the node starting at the cursor (the first character of content at `column`) and
    /// leaves the cursor at the first character of the next content line, or at the end.
    private mutating func parseBlockNode(column: Int) throws(ConfigurationError) -> YAMLNode {
        if current == "-" && isBlank(peek(1)) {
            return try parseBlockSequence(column: column)
        }
        if try looksLikeMappingKey() {
            return try parseBlockMapping(column: column)
        }
        let node = try parseInlineValue()
        try finishLine(after: "the value")
        _ = try nextContentLine()
        return node
    }

    private mutating func enter() throws(ConfigurationError) {
        depth += 1
        if depth > Self.maximumDepth {
            throw error("nesting deeper than \(Self.maximumDepth) levels is not supported")
        }
    }

    private mutating func parseBlockMapping(column: Int) throws(ConfigurationError) -> YAMLNode {
        try enter()
        defer { depth -= 1 }
        let start = location
        var entries: [YAMLNode.Entry] = []
        var seen: [String: Int] = [:]
        while true {
            let keyIndex = position
            let keyLocation = location
            if current == "-" && isBlank(peek(1)) {
                throw error("expected a key at this indentation, found a list item '- '")
            }
            guard try looksLikeMappingKey() else {
                throw error("expected a 'key: value' entry at this indentation")
            }
            let key = try parseKey(flow: false)
            skipSpaces()
            guard current == ":" else { throw error("expected ':' after the key '\(key)'") }
            advance()
            if let firstLine = seen[key] {
                throw error("duplicate key '\(key)' (first defined on line \(firstLine))", at: keyIndex)
            }
            seen[key] = keyLocation.line
            skipSpaces()
            let value: YAMLNode
            if current == nil || current == "\n" || current == "#" {
                let nullLocation = location
                try finishLine(after: "the key")
                if let next = try nextContentLine(), next > column {
                    value = try parseBlockNode(column: next)
                } else if let next = currentColumnIfContent(), next == column,
                          current == "-", isBlank(peek(1)) {
                    value = try parseBlockSequence(column: column)
                } else {
                    value = YAMLNode(content: .scalar("", .plain), location: nullLocation)
                }
            } else {
                if current == "-" && isBlank(peek(1)) {
                    throw error("a list cannot start on the same line as its key; put '- ' items on the following lines, indented")
                }
                value = try parseInlineValue(inMappingValue: true)
                try finishLine(after: "the value")
                _ = try nextContentLine()
            }
            entries.append(.init(key: key, keyLocation: keyLocation, value: value))
            guard let next = currentColumnIfContent() else { break }
            if next < column { break }
            if next > column {
                throw error("unexpected indentation: keys of this mapping start at column \(column)")
            }
        }
        return YAMLNode(content: .mapping(entries), location: start)
    }

    private mutating func parseBlockSequence(column: Int) throws(ConfigurationError) -> YAMLNode {
        try enter()
        defer { depth -= 1 }
        let start = location
        var items: [YAMLNode] = []
        while true {
            guard current == "-" && isBlank(peek(1)) else {
                throw error("expected a list item '- ' at this indentation")
            }
            let dashLocation = location
            advance()
            skipSpaces()
            if current == nil || current == "\n" || current == "#" {
                try finishLine(after: "'-'")
                if let next = try nextContentLine(), next > column {
                    items.append(try parseBlockNode(column: next))
                } else {
                    items.append(YAMLNode(content: .scalar("", .plain), location: dashLocation))
                }
            } else {
                items.append(try parseBlockNode(column: self.column))
            }
            guard let next = currentColumnIfContent() else { break }
            if next < column { break }
            if next > column {
                throw error("unexpected indentation: items of this list start at column \(column)")
            }
            if !(current == "-" && isBlank(peek(1))) { break }
        }
        return YAMLNode(content: .sequence(items), location: start)
    }

    /// Whether the cursor is at `key:` (a plain or quoted key followed by a colon and a blank).
    private mutating func looksLikeMappingKey() throws(ConfigurationError) -> Bool {
        var index = position
        if current == "\"" || current == "'" {
            let quote = current!
            index += 1
            while index < source.count, source[index] != "\n" {
                if source[index] == "\\" && quote == "\"" { index += 2; continue }
                if source[index] == quote {
                    if quote == "'" && index + 1 < source.count && source[index + 1] == "'" { index += 2; continue }
                    break
                }
                index += 1
            }
            index += 1
            while index < source.count && (source[index] == " " || source[index] == "\t") { index += 1 }
            return index < source.count && source[index] == ":"
                && (index + 1 >= source.count || isBlank(source[index + 1]))
        }
        if let scalar = current, "[{".unicodeScalars.contains(scalar) { return false }
        while index < source.count, source[index] != "\n" {
            if source[index] == "#" && index > position && (source[index - 1] == " " || source[index - 1] == "\t") {
                return false
            }
            if source[index] == ":" && (index + 1 >= source.count || isBlank(source[index + 1])) {
                return true
            }
            index += 1
        }
        return false
    }

    // MARK: Scalars and flow collections

    private mutating func parseKey(flow: Bool) throws(ConfigurationError) -> String {
        if current == "\"" || current == "'" {
            guard case .scalar(let text, _) = try parseQuoted().content else { return "" }
            return text
        }
        if current == "?" && isBlank(peek(1)) {
            throw error("complex keys ('? ') are not supported")
        }
        try refuseIndicators()
        let startIndex = position
        while let scalar = current, scalar != "\n" {
            if scalar == ":" && (isBlank(peek(1)) || (flow && isFlowIndicator(peek(1)))) { break }
            if flow && (scalar == "," || scalar == "}" || scalar == "]" || scalar == "{" || scalar == "[") { break }
            advance()
        }
        let key = String(String.UnicodeScalarView(source[startIndex..<position])).trimmingTrailingBlanks()
        if key.isEmpty { throw error("empty key; expected a name before ':'", at: startIndex) }
        return key
    }

    private func isFlowIndicator(_ scalar: Unicode.Scalar?) -> Bool {
        guard let scalar else { return false }
        return ",[]{}".unicodeScalars.contains(scalar)
    }

    private func refuseIndicators() throws(ConfigurationError) {
        if current == "?" && isBlank(peek(1)) { throw error("complex keys ('? ') are not supported") }
        switch current {
        case "&": throw error("anchors ('&') are not supported")
        case "*": throw error("aliases ('*') are not supported")
        case "!": throw error("tags ('!') are not supported")
        case "|", ">": throw error("block scalars ('|' and '>') are not supported; write the value on one line, quoted if needed")
        case "%": throw error("directives ('%') are not supported")
        case "@", "`": throw error("'\(current!)' is reserved and cannot start a plain value; quote the value")
        default: return
        }
    }

    /// A value on the current line: flow collection, quoted or plain scalar.
    private mutating func parseInlineValue(inMappingValue: Bool = false) throws(ConfigurationError) -> YAMLNode {
        switch current {
        case "[", "{": return try parseFlowNode()
        case "\"", "'": return try parseQuoted()
        default:
            try refuseIndicators()
            let startIndex = position
            let startLocation = location
            var end = position
            while let scalar = current, scalar != "\n" {
                if scalar == "#" && position > startIndex && (source[position - 1] == " " || source[position - 1] == "\t") { break }
                if scalar == ":" && isBlank(peek(1)) && inMappingValue {
                    throw error("a mapping cannot start on the same line as its key; put it on the next line, indented, or quote the value")
                }
                advance()
                if scalar != " " && scalar != "\t" { end = position }
            }
            position = end
            let text = try interpolate(from: startIndex, to: end)
            return YAMLNode(content: .scalar(text, .plain), location: startLocation)
        }
    }

    private mutating func parseFlowNode() throws(ConfigurationError) -> YAMLNode {
        try enter()
        defer { depth -= 1 }
        let openIndex = position
        let startLocation = location
        let isMapping = current == "{"
        let close: Unicode.Scalar = isMapping ? "}" : "]"
        let what = isMapping ? "flow mapping" : "flow sequence"
        advance()
        var items: [YAMLNode] = []
        var entries: [YAMLNode.Entry] = []
        var seen: [String: Int] = [:]
        while true {
            try skipFlowWhitespace(unterminated: what, close: close, openIndex: openIndex)
            if current == close { advance(); break }
            if current == "," { throw error("expected a value before ',' in \(what)") }
            if isMapping {
                let keyIndex = position
                let keyLocation = location
                let key = try parseKey(flow: true)
                if let line = seen[key] {
                    throw error("duplicate key '\(key)' (first defined on line \(line))", at: keyIndex)
                }
                seen[key] = keyLocation.line
                try skipFlowWhitespace(unterminated: what, close: close, openIndex: openIndex)
                var value = YAMLNode(content: .scalar("", .plain), location: location)
                if current == ":" {
                    advance()
                    try skipFlowWhitespace(unterminated: what, close: close, openIndex: openIndex)
                    if current != "," && current != close { value = try parseFlowValue() }
                }
                entries.append(.init(key: key, keyLocation: keyLocation, value: value))
            } else {
                items.append(try parseFlowValue())
            }
            try skipFlowWhitespace(unterminated: what, close: close, openIndex: openIndex)
            if current == "," { advance(); continue }
            if current == close { advance(); break }
            throw error("expected ',' or '\(close)' in \(what) opened at \(startLocation.line):\(startLocation.column)")
        }
        return YAMLNode(content: isMapping ? .mapping(entries) : .sequence(items), location: startLocation)
    }

    private mutating func skipFlowWhitespace(
        unterminated what: String, close: Unicode.Scalar, openIndex: Int
    ) throws(ConfigurationError) {
        while let scalar = current {
            if scalar == " " || scalar == "\t" || scalar == "\n" { advance(); continue }
            if scalar == "#" && position > 0 && isBlank(source[position - 1]) {
                while let next = current, next != "\n" { advance() }
                continue
            }
            return
        }
        throw error("unterminated \(what); expected '\(close)'", at: openIndex)
    }

    private mutating func parseFlowValue() throws(ConfigurationError) -> YAMLNode {
        switch current {
        case "[", "{": return try parseFlowNode()
        case "\"", "'": return try parseQuoted()
        default:
            try refuseIndicators()
            let startIndex = position
            let startLocation = location
            var end = position
            while let scalar = current, scalar != "\n" {
                if scalar == "$" && peek(1) == "{" {
                    // `${VAR}` is one unit, whatever flow indicators it holds.
                    while let inner = current, inner != "}", inner != "\n" { advance() }
                    if current == "}" { advance() }
                    end = position
                    continue
                }
                if scalar == "," || scalar == "]" || scalar == "}" || scalar == "[" || scalar == "{" { break }
                if scalar == ":" && (isBlank(peek(1)) || isFlowIndicator(peek(1))) { break }
                if scalar == "#" && position > startIndex && isBlank(source[position - 1]) { break }
                advance()
                if scalar != " " && scalar != "\t" { end = position }
            }
            if current == ":" { throw error("a 'key: value' pair inside a flow sequence is not supported; use a flow mapping '{ }'") }
            position = end
            return YAMLNode(content: .scalar(try interpolate(from: startIndex, to: end), .plain), location: startLocation)
        }
    }

    private mutating func parseQuoted() throws(ConfigurationError) -> YAMLNode {
        let openIndex = position
        let startLocation = location
        let quote = current!
        advance()
        var text = ""
        while true {
            guard let scalar = current, scalar != "\n" else {
                throw error("unterminated \(quote == "'" ? "single" : "double")-quoted string; expected a closing \(quote) on the same line", at: openIndex)
            }
            if scalar == quote {
                if quote == "'" && peek(1) == "'" { text.unicodeScalars.append("'"); position += 2; continue }
                advance()
                break
            }
            if quote == "\"" && scalar == "\\" {
                text.unicodeScalars.append(contentsOf: try parseEscape())
                continue
            }
            if quote == "\"" && scalar == "$" && peek(1) == "{" {
                let (value, next) = try expandVariable(at: position)
                text += value
                position = next
                continue
            }
            if quote == "\"" && scalar == "$" && peek(1) == "$" && peek(2) == "{" {
                text += "${"
                position += 3
                continue
            }
            text.unicodeScalars.append(scalar)
            advance()
        }
        return YAMLNode(
            content: .scalar(text, quote == "'" ? .singleQuoted : .doubleQuoted), location: startLocation)
    }

    private mutating func parseEscape() throws(ConfigurationError) -> [Unicode.Scalar] {
        let escapeIndex = position
        advance()
        guard let scalar = current, scalar != "\n" else {
            throw error("unterminated escape sequence in double-quoted string", at: escapeIndex)
        }
        advance()
        let simple: [Unicode.Scalar: Unicode.Scalar] = [
            "0": "\0", "a": "\u{07}", "b": "\u{08}", "t": "\t", "\t": "\t", "n": "\n", "v": "\u{0B}",
            "f": "\u{0C}", "r": "\r", "e": "\u{1B}", " ": " ", "\"": "\"", "/": "/", "\\": "\\",
            "N": "\u{85}", "_": "\u{A0}", "L": "\u{2028}", "P": "\u{2029}",
        ]
        if let mapped = simple[scalar] { return [mapped] }
        let digits: Int
        switch scalar {
        case "x": digits = 2
        case "u": digits = 4
        case "U": digits = 8
        default:
            throw error("invalid escape sequence '\\\(scalar)' in double-quoted string", at: escapeIndex)
        }
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let digit = current, let nibble = hexValue(digit) else {
                throw error("invalid escape sequence: '\\\(scalar)' needs \(digits) hexadecimal digits", at: escapeIndex)
            }
            value = value * 16 + nibble
            advance()
        }
        guard let result = Unicode.Scalar(value) else {
            throw error("invalid escape sequence: U+\(String(value, radix: 16, uppercase: true)) is not a Unicode scalar value", at: escapeIndex)
        }
        return [result]
    }

    private func hexValue(_ scalar: Unicode.Scalar) -> UInt32? {
        switch scalar.value {
        case 0x30...0x39: return scalar.value - 0x30
        case 0x41...0x46: return scalar.value - 0x41 + 10
        case 0x61...0x66: return scalar.value - 0x61 + 10
        default: return nil
        }
    }

    /// Interpolates `${VAR}` and `${VAR:-default}` in the plain scalar `source[start..<end]`.
    private func interpolate(from start: Int, to end: Int) throws(ConfigurationError) -> String {
        var text = ""
        var index = start
        while index < end {
            if source[index] == "$" && index + 2 < end && source[index + 1] == "$" && source[index + 2] == "{" {
                text += "${"
                index += 3
                continue
            }
            if source[index] == "$" && index + 1 < end && source[index + 1] == "{" {
                let (value, next) = try expandVariable(at: index)
                if next > end { throw error("unterminated '${'; expected '}'", at: index) }
                text += value
                index = next
                continue
            }
            text.unicodeScalars.append(source[index])
            index += 1
        }
        return text
    }

    /// Expands the `${...}` starting at `index` (its `$`); returns the value and the index after `}`.
    private func expandVariable(at index: Int) throws(ConfigurationError) -> (String, Int) {
        var cursor = index + 2
        var name = ""
        while cursor < source.count, source[cursor] != "}", source[cursor] != "\n",
              !(source[cursor] == ":" && cursor + 1 < source.count && source[cursor + 1] == "-") {
            name.unicodeScalars.append(source[cursor])
            cursor += 1
        }
        guard cursor < source.count, source[cursor] != "\n" else {
            throw error("unterminated '${'; expected '}'", at: index)
        }
        let valid = !name.isEmpty && name.unicodeScalars.enumerated().allSatisfy { offset, scalar in
            scalar == "_" || (scalar.isASCII && scalar.properties.isAlphabetic)
                || (offset > 0 && scalar.isASCII && scalar.properties.numericType != nil)
        }
        guard valid else {
            throw error("invalid environment variable name '\(name)' in '${...}'; expected letters, digits and '_'", at: index)
        }
        var fallback: String?
        if source[cursor] == ":" {
            cursor += 2
            var text = ""
            while cursor < source.count, source[cursor] != "}", source[cursor] != "\n" {
                text.unicodeScalars.append(source[cursor])
                cursor += 1
            }
            guard cursor < source.count, source[cursor] == "}" else {
                throw error("unterminated '${'; expected '}'", at: index)
            }
            fallback = text
        }
        let value = environment[name].flatMap { $0.isEmpty && fallback != nil ? nil : $0 } ?? fallback
        guard let value else {
            throw error("environment variable '\(name)' is not set; set it or write '${\(name):-default}'", at: index)
        }
        return (value, cursor + 1)
    }
}

extension String {
    func trimmingTrailingBlanks() -> String {
        var scalars = Substring(self).unicodeScalars
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
