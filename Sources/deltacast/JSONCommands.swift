import DeltacastCommandLine
import DeltacastJSON
import Foundation

/// Reads and parses a JSON file, printing a located error on failure.
func readJSON(_ path: String, command: String) -> JSONValue? {
    guard let data = FileManager.default.contents(atPath: path) else {
        printError("deltacast \(command): cannot read '\(path)': no such file or not readable")
        return nil
    }
    do {
        return try JSONParser.parse(Array(data))
    } catch {
        printError("deltacast \(command): \(path): \(error)")
        return nil
    }
}

/// `deltacast diff`: the patch the proxy would push between two documents.
enum DiffCommand: Command {
    static let name = "diff"
    static let summary = "print the patch the proxy would push between two JSON documents"
    static let usage = """
        usage: deltacast diff OLD.json NEW.json [--array-key PATH=FIELD]... [--ignore PATH]... [--merge]

        Prints the JSON Patch (or, with --merge, the JSON Merge Patch) that turns OLD into NEW,
        as the proxy computes it, then on standard error its size against NEW's.
          --array-key PATH=FIELD   match elements of the array at PATH by FIELD (`*` for any segment;
                                   an empty PATH, `=id`, is the document itself when it is an array)
          --ignore PATH            a volatile path whose changes alone are not a change
          --merge                  produce a merge patch (RFC 7396)
        Exit 0 with the patch ([] or {} when nothing changed); 1 when a file is not valid JSON
        or, with --merge, when no merge patch can express the change (a member set to null).
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--merge"], options: ["--array-key", "--ignore"])
        guard args.positionals.count == 2 else { throw .init(message: "expected OLD.json and NEW.json") }
        var options = DiffOptions()
        for spec in args.values("--array-key") {
            guard let equals = spec.lastIndex(of: "="), !spec[spec.index(after: equals)...].isEmpty,
                  let pattern = try? JSONPointerPattern(String(spec[..<equals])) else {
                throw .init(message: "invalid --array-key '\(spec)'; expected PATH=FIELD such as /items=id, or =id for a root array")
            }
            options.arrayKeys.append((pattern, String(spec[spec.index(after: equals)...])))
        }
        for path in args.values("--ignore") {
            guard let pattern = try? JSONPointerPattern(path) else {
                throw .init(message: "invalid --ignore '\(path)'; expected a JSON Pointer such as /generatedAt")
            }
            options.ignore.append(pattern)
        }
        guard let old = readJSON(args.positionals[0], command: name),
              let new = readJSON(args.positionals[1], command: name) else { return .failure }
        let documentSize = new.serialized().count
        let patchBytes: [UInt8]
        if args.has("--merge") {
            guard let patch = JSONMergePatch.diff(old, new) else {
                printError("deltacast diff: no merge patch can express this change (a member set to null); the proxy sends a snapshot")
                return .failure
            }
            patchBytes = old == new ? Array("{}".utf8) : patch.serialized()
        } else {
            patchBytes = JSONPatch.serialized(JSONDiff.diff(old, new, options: options).operations)
        }
        print(String(decoding: patchBytes, as: UTF8.self))
        let share = documentSize == 0 ? 0 : Double(patchBytes.count) * 100 / Double(documentSize)
        printError("patch \(patchBytes.count) bytes, document \(documentSize) bytes (\(String(format: "%.1f", share))%)"
                   + (patchBytes.count >= documentSize ? "; the proxy would send a snapshot" : ""))
        return .success
    }
}

/// `deltacast patch`: applies a patch to a document.
enum PatchCommand: Command {
    static let name = "patch"
    static let summary = "apply a JSON Patch (or Merge Patch) to a document and print the result"
    static let usage = """
        usage: deltacast patch DOC.json PATCH.json [--merge]

        Applies PATCH (RFC 6902, or RFC 7396 with --merge) to DOC and prints the result.
        Exit 1 with the failing operation's index and reason when the patch does not apply
        (nothing is half-applied), or when a file is not valid JSON.
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--merge"], options: [])
        guard args.positionals.count == 2 else { throw .init(message: "expected DOC.json and PATCH.json") }
        guard let document = readJSON(args.positionals[0], command: name),
              let patch = readJSON(args.positionals[1], command: name) else { return .failure }
        if args.has("--merge") {
            print(JSONMergePatch.apply(patch, to: document).jsonText)
            return .success
        }
        do {
            let result = try JSONPatch.apply(try JSONPatch.operations(from: patch), to: document)
            print(result.jsonText)
            return .success
        } catch {
            printError("deltacast patch: \(args.positionals[1]): \(error)")
            return .failure
        }
    }
}
