/// A node of a parsed YAML-subset document, carrying where it was written.
public struct YAMLNode: Sendable, Hashable {
    /// How a scalar was written; a plain `~` or empty value is null, a quoted one is text.
    public enum ScalarStyle: Sendable, Hashable {
        case plain, singleQuoted, doubleQuoted
    }

    /// The node's content.
    public enum Content: Sendable, Hashable {
        /// A scalar's text after unescaping and `${VAR}` interpolation.
        case scalar(String, ScalarStyle)
        /// Mapping entries in file order (duplicate keys are refused by the parser).
        case mapping([Entry])
        /// Sequence items in file order.
        case sequence([YAMLNode])
    }

    /// One `key: value` pair of a mapping.
    public struct Entry: Sendable, Hashable {
        /// The key's text.
        public var key: String
        /// Where the key was written.
        public var keyLocation: SourceLocation
        /// The value (a null scalar when nothing follows the colon).
        public var value: YAMLNode
    }

    /// The content.
    public var content: Content
    /// Where the node starts.
    public var location: SourceLocation

    /// True for a plain empty scalar, `~` or `null`.
    public var isNull: Bool {
        if case .scalar(let text, .plain) = content { return text.isEmpty || text == "~" || text == "null" }
        return false
    }

    /// A short name of the node's kind, for error messages ("a mapping", "a list", "a scalar").
    public var kindDescription: String {
        switch content {
        case .scalar: return isNull ? "nothing" : "a scalar"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }
}
