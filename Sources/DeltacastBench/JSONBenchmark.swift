import DeltacastCommandLine
import DeltacastHub
import DeltacastJSON
import Foundation

/// `deltacast bench json`: parser throughput against Foundation's JSONSerialization, parse +
/// diff time for a 1 MB keyed document with 1% of rows changed, and patch sizes as a share of
/// the document. Everything runs on the same generated documents, in one process, one run.
enum JSONBenchmark {
    struct Options {
        var rounds = 7
        var rows = 5000
        /// `examples/bench/simdjson_parse` (built by `run.sh json`): the measured limit.
        var simdjson: String?
    }

    /// A deterministic stock-table document of `rows` keyed rows (about 200 bytes each).
    static func document(rows: Int, seed: UInt64, priceShift: [Int: String] = [:], order: [Int]? = nil, extraHead: Bool = false) -> [UInt8] {
        var text = "{\"generatedAt\":\"2026-11-23T10:00:00Z\",\"currency\":\"EUR\",\"items\":["
        var state = seed
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        var rowsText: [String] = []
        rowsText.reserveCapacity(rows)
        for id in 0..<rows {
            let generated = "\(100 + next() % 900).\(10 + next() % 90)"  // always drawn: keeps rows stable
            let price = priceShift[id] ?? generated
            rowsText.append("{\"id\":\(id),\"symbol\":\"SYM\(id)\",\"name\":\"Company número \(id) \\\"Ltd\\\"\",\"price\":\(price),\"change\":-\(next() % 100).\(next() % 10),\"volume\":\(next() % 10_000_000),\"tags\":[\"equity\",\"eu\",\"t\(next() % 20)\"],\"meta\":{\"sector\":\"s\(next() % 12)\",\"listed\":true,\"rank\":\(id)}}")
        }
        if let order { rowsText = order.map { rowsText[$0] } }
        if extraHead {
            rowsText.insert("{\"id\":-1,\"symbol\":\"NEW\",\"name\":\"Newly listed\",\"price\":1.00,\"change\":0,\"volume\":0,\"tags\":[],\"meta\":{\"sector\":\"s0\",\"listed\":true,\"rank\":-1}}", at: 0)
        }
        text += rowsText.joined(separator: ",") + "]}"
        return Array(text.utf8)
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// simdjson's median parse time of `bytes` over `rounds`, by the C++ program at `program`.
    static func simdjson(_ program: String, _ bytes: [UInt8], rounds: Int) throws -> Double {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bench-json-\(getpid())-\(bytes.count).json")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = [String(rounds), file.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let line = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0, let range = line.range(of: "\"seconds\":"),
              let seconds = Double(line[range.upperBound...].prefix { $0 != "}" && $0 != "\n" }) else {
            throw HTTPBenchmark.Failure(description: "\(program) failed: \(line)")
        }
        return seconds
    }

    static func time(_ rounds: Int, _ body: () throws -> Void) rethrows -> Double {
        var samples: [Double] = []
        let clock = ContinuousClock()
        for _ in 0..<rounds {
            let start = clock.now
            try body()
            let elapsed = clock.now - start
            samples.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        return median(samples)
    }

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--rounds", "--simdjson"])
        var options = Options()
        if let rounds = args.value("--rounds") {
            guard let value = Int(rounds), (1...100).contains(value) else { throw .init(message: "invalid --rounds '\(rounds)'; expected 1...100") }
            options.rounds = value
        }
        options.simdjson = args.value("--simdjson")
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        #if DEBUG
        printError("deltacast bench json: this is a debug build; run `swift run -c release deltacast bench json` for figures that mean something")
        #endif
        do {
            try measure(options)
            return .success
        } catch {
            printError("deltacast bench json: \(error)")
            return .failure
        }
    }

    static func measure(_ options: Options) throws {
        let small = document(rows: options.rows, seed: 1)
        let large = document(rows: options.rows * 10, seed: 2)
        var results: [(String, String)] = []
        var json: [String: Double] = [:]

        // 1. Parse throughput, ours vs JSONSerialization, same bytes, alternating.
        for (label, bytes) in [("1MB", small), ("10MB", large)] {
            let data = Data(bytes)
            let rounds = label == "1MB" ? options.rounds * 3 : options.rounds
            // "Parse" is what the hub does with a body: validate it into a tape (JSONDocument).
            // The tree (JSONValue, every string and number built) is shown beside it.
            let ours = try time(rounds) { _ = try JSONDocument(parsing: bytes) }
            let tree = try time(rounds) { _ = try JSONParser.parse(bytes) }
            let foundation = try time(rounds) { _ = try JSONSerialization.jsonObject(with: data) }
            let megabytes = Double(bytes.count) / 1_000_000
            results.append(("parse \(label) (\(bytes.count) bytes)", String(format: "ours (tape) %.0f MB/s, JSONSerialization %.0f MB/s, ratio %.2fx", megabytes / ours, megabytes / foundation, foundation / ours)))
            results.append(("parse \(label) into a JSONValue tree", String(format: "%.0f MB/s, ratio %.2fx", megabytes / tree, foundation / tree)))
            json["parse_\(label)_ours_MBps"] = megabytes / ours
            json["parse_\(label)_tree_MBps"] = megabytes / tree
            json["parse_\(label)_foundation_MBps"] = megabytes / foundation
            json["parse_\(label)_ratio"] = foundation / ours
            json["parse_\(label)_tree_ratio"] = foundation / tree
            if let program = options.simdjson {
                let seconds = try simdjson(program, bytes, rounds: rounds)
                results.append(("parse \(label): simdjson (the limit)", String(format: "%.0f MB/s; ours is %.3fx of it", megabytes / seconds, seconds / ours)))
                json["parse_\(label)_simdjson_MBps"] = megabytes / seconds
                json["parse_\(label)_ours_vs_simdjson"] = seconds / ours
            }
        }

        // 2. Parse + diff: 1% of rows changed.
        let keyed = DiffOptions(arrayKeys: [(try JSONPointerPattern("/items"), "id")], ignore: [try JSONPointerPattern("/generatedAt")])
        var shifted: [Int: String] = [:]
        for index in stride(from: 0, to: options.rows, by: 100) { shifted[index] = "1\(index).25" }
        let changedBytes = document(rows: options.rows, seed: 1, priceShift: shifted)
        let oldDocument = try JSONDocument(parsing: small)
        let old = oldDocument.value
        var modifiedResult = JSONDiff.diff(.null, .null)
        let parseDiff = try time(options.rounds * 3) {
            let new = try JSONDocument(parsing: changedBytes)
            modifiedResult = JSONDiff.diff(oldDocument, new, options: keyed)
        }
        var treeResult = modifiedResult
        let treeParseDiff = try time(options.rounds * 3) {
            let new = try JSONParser.parse(changedBytes)
            treeResult = JSONDiff.diff(old, new, options: keyed)
        }
        guard treeResult.operations == modifiedResult.operations else {
            throw HTTPBenchmark.Failure(description: "the tape and the tree disagree on the patch")
        }
        results.append(("parse + diff, 1% of \(options.rows) keyed rows changed", String(format: "%.2f ms (%d operations); as trees %.2f ms", parseDiff * 1000, modifiedResult.operations.count, treeParseDiff * 1000)))
        results.append(("tape beside the document", "\(oldDocument.tapeBytes) bytes for \(small.count)"))
        json["parse_diff_1pct_ms"] = parseDiff * 1000
        json["parse_diff_1pct_tree_ms"] = treeParseDiff * 1000

        // 3. Patch sizes as a share of the document.
        let inserted = try JSONParser.parse(document(rows: options.rows, seed: 1, extraHead: true))
        var order = Array(0..<options.rows)
        var generator = UInt64(7)
        for _ in 0..<10 {
            generator = generator &* 6364136223846793005 &+ 1442695040888963407
            let from = Int(generator >> 33) % options.rows
            generator = generator &* 6364136223846793005 &+ 1442695040888963407
            order.insert(order.remove(at: from), at: Int(generator >> 33) % options.rows)
        }
        let reranked = try JSONParser.parse(document(rows: options.rows, seed: 1, order: order))
        let insertDiff = JSONDiff.diff(old, inserted, options: keyed)
        let rerankDiff = JSONDiff.diff(old, reranked, options: keyed)
        for (label, key, result) in [("1% of rows modified", "modified", modifiedResult), ("one row inserted at the head", "inserted", insertDiff), ("10 rows re-ranked", "reranked", rerankDiff)] {
            let share = Double(result.serializedSize) * 100 / Double(small.count)
            results.append(("patch size, \(label)", String(format: "%d bytes = %.3f%% of %d", result.serializedSize, share, small.count)))
            json["patch_\(key)_percent"] = share
        }

        // 4. What `digest: true` adds to each change: the RFC 8785 form of the whole document
        //    and its SHA-256, once per change (never per subscriber).
        let digest = time(options.rounds * 3) { _ = Topic.digest(oldDocument, body: small) }
        results.append(("digest of a change (RFC 8785 + SHA-256), \(small.count) bytes", String(format: "%.2f ms = %.2fx the parse + diff above", digest * 1000, digest / parseDiff)))
        json["digest_1MB_ms"] = digest * 1000
        json["digest_vs_parse_diff"] = digest / parseDiff

        let width = results.map(\.0.count).max() ?? 0
        for (label, value) in results { print(label.padding(toLength: width + 2, withPad: " ", startingAt: 0) + value) }
        let line = json.keys.sorted().map { String(format: "\"%@\":%.3f", $0, json[$0]!) }.joined(separator: ",")
        print("{\"bench\":\"json\",\(line)}")
    }
}
