/// A tiny command-line parser: flags, options with values, positionals. Unknown options and
/// missing values are usage errors (exit 2), as users of every Unix tool expect.
public struct CommandLineArguments {
    /// A usage error: the message and the usage of the command it belongs to.
    public struct UsageError: Error {
        public var message: String
        public init(message: String) { self.message = message }
    }

    public private(set) var flags: Set<String> = []
    public private(set) var options: [String: [String]] = [:]
    public private(set) var positionals: [String] = []

    /// Parses `arguments` given the flags and value-taking options the command knows
    /// (with their leading dashes, e.g. `--merge`, `-c`). Aliases map to a canonical name.
    public init(_ arguments: [String], flags knownFlags: Set<String>, options knownOptions: Set<String>,
         aliases: [String: String] = [:]) throws(UsageError) {
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            var argument = arguments[index]
            index += 1
            if onlyPositionals || !argument.hasPrefix("-") || argument == "-" {
                positionals.append(argument)
                continue
            }
            if argument == "--" { onlyPositionals = true; continue }
            var inlineValue: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                inlineValue = String(argument[argument.index(after: equals)...])
                argument = String(argument[..<equals])
            }
            argument = aliases[argument] ?? argument
            if knownFlags.contains(argument) {
                if inlineValue != nil { throw UsageError(message: "option '\(argument)' takes no value") }
                flags.insert(argument)
            } else if knownOptions.contains(argument) {
                let value: String
                if let inlineValue {
                    value = inlineValue
                } else {
                    guard index < arguments.count else { throw UsageError(message: "option '\(argument)' needs a value") }
                    value = arguments[index]
                    index += 1
                }
                options[argument, default: []].append(value)
            } else {
                throw UsageError(message: "unknown option '\(argument)'")
            }
        }
    }

    /// The last value given for `option`.
    public func value(_ option: String) -> String? { options[option]?.last }
    /// Every value given for a repeatable option, in order.
    public func values(_ option: String) -> [String] { options[option] ?? [] }
    /// Whether `flag` was given.
    public func has(_ flag: String) -> Bool { flags.contains(flag) }
}
