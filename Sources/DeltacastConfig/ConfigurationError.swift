/// One problem found in a configuration file, with where it is and what was expected.
///
/// Its `description` reads the way compilers print errors, so editors can jump to it:
/// ```
/// config/deltacast.yaml:7:5: unknown key 'intervall' in endpoint; did you mean 'interval'?
///     intervall: 1s
///     ^
/// ```
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the problem is.
    public var location: SourceLocation
    /// What is wrong and what was expected, without the location.
    public var message: String
    /// The text of the offending line, without its line terminator (empty if unknown).
    public var sourceLine: String

    /// Creates an error.
    public init(location: SourceLocation, message: String, sourceLine: String = "") {
        self.location = location
        self.message = message
        self.sourceLine = sourceLine
    }

    /// `file:line:column: message`, then the line and a caret under the column.
    public var description: String {
        var text = "\(location): \(message)"
        if !sourceLine.isEmpty || location.column > 0 {
            // Tabs are kept so the caret lines up in a terminal.
            let prefix = sourceLine.unicodeScalars.prefix(max(0, location.column - 1))
                .map { $0 == "\t" ? "\t" : " " }.joined()
            text += "\n\(sourceLine)\n\(prefix)^"
        }
        return text
    }
}

/// Every problem found in a configuration file, in the order of their locations.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    /// The problems, at least one.
    public var errors: [ConfigurationError]

    /// Creates the list.
    public init(_ errors: [ConfigurationError]) { self.errors = errors }

    /// Each error's description, separated by blank lines.
    public var description: String { errors.map(\.description).joined(separator: "\n\n") }
}
