import DeltacastCommandLine
import DeltacastConfig
import DeltacastServer
import Foundation

/// One subcommand of `deltacast`.
protocol Command {
    /// Its name on the command line.
    static var name: String { get }
    /// One line for `deltacast --help`.
    static var summary: String { get }
    /// The full usage text for `deltacast NAME --help`.
    static var usage: String { get }
    /// Runs it with the arguments after its name.
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus
}

/// How to run this same executable from where the user stands, for hints the commands print:
/// `deltacast` when that name on `PATH` is this binary; otherwise its path, relative to the
/// working directory when it lies below it (`.build/debug/deltacast` after `swift run`).
func invocation() -> String {
    let fileManager = FileManager.default
    let argument = CommandLine.arguments[0]
    let resolved = (try? fileManager.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? argument
    // As the user's shell or `swift run` named it (symlinks kept: `.build/debug`, not the triple).
    let named = argument.contains("/") ? URL(fileURLWithPath: argument).standardizedFileURL.path : resolved
    let onPath = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        .map { URL(fileURLWithPath: String($0)).appendingPathComponent("deltacast").path }
        .first { fileManager.isExecutableFile(atPath: $0) }
    if let onPath, URL(fileURLWithPath: onPath).resolvingSymlinksInPath().path == URL(fileURLWithPath: resolved).resolvingSymlinksInPath().path {
        return "deltacast"
    }
    let directory = fileManager.currentDirectoryPath + "/"
    var shown = named.hasPrefix(directory) ? String(named.dropFirst(directory.count)) : named
    // `swift run` names `.build/TRIPLE/debug/deltacast`; `.build/debug` is the same folder, shorter.
    let parts = shown.split(separator: "/", omittingEmptySubsequences: false)
    let short = parts.count == 4 ? ".build/\(parts[2])/deltacast" : shown
    if parts.count == 4, parts[0] == ".build",
       URL(fileURLWithPath: short).resolvingSymlinksInPath().path == URL(fileURLWithPath: shown).resolvingSymlinksInPath().path {
        shown = short
    }
    return shown
}

/// Reads a configuration file into a validated ``Configuration``, printing every error.
func loadConfiguration(path: String, command: String) -> (Configuration?, ExitStatus) {
    switch readConfiguration(path: path) {
    case .success(let configuration):
        return (configuration, .success)
    case .failure(let error):
        printError(error.message.hasPrefix("cannot read") || error.message.hasSuffix("is not UTF-8 text") ? "deltacast \(command): \(error.message)" : error.message)
        return (nil, .failure)
    }
}

/// Reads and validates a configuration file; the error's message is what `check` prints:
/// every error as `file:line:col: message` with the line and a caret, then a count.
func readConfiguration(path: String) -> Result<Configuration, ReloadError> {
    guard let data = FileManager.default.contents(atPath: path) else {
        return .failure(ReloadError(message: "cannot read '\(path)': no such file or not readable"))
    }
    guard let text = String(data: data, encoding: .utf8) else {
        return .failure(ReloadError(message: "'\(path)' is not UTF-8 text"))
    }
    do {
        return .success(try Configuration.load(text: text, file: path, environment: ProcessInfo.processInfo.environment))
    } catch {
        return .failure(ReloadError(message: error.description + "\n\n\(error.errors.count) error\(error.errors.count == 1 ? "" : "s") in \(path)"))
    }
}

