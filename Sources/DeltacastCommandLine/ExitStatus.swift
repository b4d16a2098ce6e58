import Foundation

/// Exit statuses of the `deltacast` command.
public enum ExitStatus: Int32 {
    /// Success.
    case success = 0
    /// The input was wrong: an invalid configuration, a file that is not JSON, a patch that
    /// does not apply.
    case failure = 1
    /// The command line itself was wrong (unknown option, missing value).
    case usage = 2
}

/// Writes to standard error.
public func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

