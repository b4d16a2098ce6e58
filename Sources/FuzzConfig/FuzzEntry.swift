import DeltacastConfig

/// libFuzzer entry point: any bytes, as a configuration file, must give a configuration or a
/// located error, never a crash or a hang. Build and run: see README "Fuzzing".
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfiguration(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        _ = try Configuration.load(text: text, file: "fuzz.yaml", environment: ["SET": "value"])
    } catch {
        for problem in error.errors {
            precondition(problem.location.line >= 1 && problem.location.column >= 1, "error without a location")
            _ = problem.description
        }
    }
    return 0
}
