/// A position in a configuration file: the file's name, a 1-based line and a 1-based column
/// (counted in Unicode scalars, so a caret lines up under the character a person sees).
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The file name as given to the parser (e.g. `config/deltacast.yaml`).
    public var file: String
    /// 1-based line number.
    public var line: Int
    /// 1-based column number.
    public var column: Int

    /// Creates a location.
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `file:line:column`.
    public var description: String { "\(file):\(line):\(column)" }
}
