public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the tests find things: the built `deltacast` (the test bundle sits in the build
/// products directory, beside it) and the repository's root.
public enum TestPaths {
    /// The built `deltacast` executable.
    public static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deltacast")
    /// The repository's root.
    public static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// The built `deltacast` as a long-running child process (`serve`, `demo`, `simulate`), run from
/// the repository's root, and the first line it printed ("… listening on http://HOST:PORT").
/// Its standard error is drained in the background so a chatty child never blocks. The caller
/// ends it (``stop()``, or a signal to `process`).
public final class DeltacastChild: @unchecked Sendable {
    public let process = Process()
    /// Its standard output, after the first line.
    public let out = Pipe()
    public let errors = Pipe()
    public let firstLine: String

    /// Starts `deltacast ARGUMENTS`; with `configuration`, the text is written to a temporary
    /// file whose path follows `-c` (removed once the child has printed its first line).
    /// - Throws: when the child prints no port, with its exit status and what it said.
    public init(_ arguments: [String], configuration: String? = nil) throws {
        var arguments = arguments
        var file: URL?
        if let configuration {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yaml")
            try configuration.write(to: path, atomically: true, encoding: .utf8)
            arguments += ["-c", path.path]
            file = path
        }
        defer { if let file { try? FileManager.default.removeItem(at: file) } }
        process.executableURL = TestPaths.executable
        process.arguments = arguments
        process.currentDirectoryURL = TestPaths.repositoryRoot
        process.standardOutput = out
        process.standardError = errors
        try process.run()
        var line = [UInt8]()
        while line.last != 0x0A, let byte = try out.fileHandleForReading.read(upToCount: 1)?.first { line.append(byte) }
        firstLine = String(decoding: line, as: UTF8.self)
        guard port != nil else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey:
                "deltacast \(arguments.first ?? "") did not print its port (exit \(process.terminationStatus)): \(firstLine) \(said.suffix(2000))"])
        }
        let errors = errors
        Thread.detachNewThread { _ = errors.fileHandleForReading.readDataToEndOfFile() }
    }

    /// The port the first line names.
    public var port: Int? { Int(firstLine.split(separator: ":").last?.filter(\.isNumber) ?? "") }

    /// `http://HOST:PORT` from the first line.
    public var base: String { String(firstLine.split(separator: " ").last ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }

    /// Kills it and waits for it.
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
