import DeltacastCommandLine
import DeltacastLoop
import Foundation

/// `deltacast bench http`: Deltacast against nginx (Debian package) in the same run, with 2
/// workers each (nothing pinned) or, with `--workers 1`, one each pinned to CPU 0 and wrk
/// pinned to CPU 1. Reports requests/s and their ratio,
/// server CPU seconds per run, and RSS per idle keep-alive connection at 10,000 and 19,000.
///
/// Both servers answer `GET /api/doc` with the same 2 KiB JSON document: nginx from a file,
/// Deltacast from its topic cache (published once before the runs, as a polled body would be).
enum HTTPBenchmark {
    static let body: String = {
        let rows = (0..<49).map { #"{"id":\#($0),"symbol":"SYM\#($0)","price":\#(100 + $0).25}"# }.joined(separator: ",")
        return #"{"items":[\#(rows)]}"#
    }()
    static let path = "/api/doc"

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--duration", "--connections", "--rounds", "--workers"])
        let workers = Int(args.value("--workers") ?? "2") ?? 0
        guard workers == 1 || workers == 2 else { throw .init(message: "--workers 1 (each server pinned to CPU 0, wrk to CPU 1) or 2 (nothing pinned)") }
        let duration = Int(args.value("--duration") ?? "8") ?? 8
        let connections = Int(args.value("--connections") ?? "256") ?? 256
        let rounds = Int(args.value("--rounds") ?? "2") ?? 2
        guard (1...120).contains(duration), (1...10_000).contains(connections), (1...10).contains(rounds) else {
            throw .init(message: "--duration 1...120 s, --connections 1...10000, --rounds 1...10")
        }
        for tool in ["/usr/sbin/nginx", "/usr/bin/wrk", "/usr/bin/taskset"] where !FileManager.default.isExecutableFile(atPath: tool) {
            printError("deltacast bench http: \(tool) is missing; install it with: apt-get install nginx-light wrk util-linux")
            return .failure
        }
        do {
            try measure(duration: duration, connections: connections, rounds: rounds, workers: workers)
            return .success
        } catch {
            printError("deltacast bench http: \(error)")
            return .failure
        }
    }

    struct Failure: Error, CustomStringConvertible { var description: String }

    static func measure(duration: Int, connections: Int, rounds: Int, workers: Int) throws {
        // One worker: servers on CPU 0, wrk on CPU 1. Two workers (nginx's usual setting):
        // nothing pinned, servers and wrk share both cores.
        let serverCPUs = workers == 1 ? "0" : "0,1", clientCPUs = workers == 1 ? "1" : "0,1"
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bench-http-\(getpid())")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("www/api"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try body.write(to: directory.appendingPathComponent("www\(path)"), atomically: true, encoding: .utf8)
        let nginxPort = 18_181, ourPort = 18_180
        try """
            worker_processes \(workers);
            worker_rlimit_nofile 20000;
            daemon off;
            pid \(directory.path)/nginx.pid;
            error_log \(directory.path)/error.log;
            events { worker_connections 20000; }
            http {
              access_log off;
              keepalive_timeout 600s;
              keepalive_requests 1000000;
              server {
                listen 127.0.0.1:\(nginxPort);
                location = \(path) { root \(directory.path)/www; default_type application/json; }
              }
            }
            """.write(to: directory.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        try """
            listen: 127.0.0.1:\(ourPort)
            endpoints:
              - path: \(path)
                source: publish
            admin: { token: bench-admin-token-0123456789 }
            server: { event_loops: \(workers), idle_timeout: 10m, header_timeout: 10m }
            limits: { max_connections: 20000, max_connections_per_ip: 20000 }
            """.write(to: directory.appendingPathComponent("deltacast.yaml"), atomically: true, encoding: .utf8)

        let ours = try launch("/usr/bin/taskset", ["-c", serverCPUs, CommandLine.arguments[0], "serve", "-c", directory.appendingPathComponent("deltacast.yaml").path])
        defer { ours.terminate(); ours.waitUntilExit() }
        let nginx = try launch("/usr/bin/taskset", ["-c", serverCPUs, "/usr/sbin/nginx", "-c", directory.appendingPathComponent("nginx.conf").path])
        defer { nginx.terminate(); nginx.waitUntilExit() }
        try waitUntilListening(port: ourPort)
        try waitUntilListening(port: nginxPort)
        let nginxWorkers = childPIDs(of: nginx.processIdentifier)
        let publisher = try Socket.connect(port: ourPort)
        try FanoutBenchmark.publish(fd: publisher, body: body, topic: path, token: "bench-admin-token-0123456789")
        close(publisher)

        // Idle memory first, on fresh servers, from one baseline: 10,000 connections, then
        // 9,000 more (19,000), none closed in between, so freed heap is never reused.
        let oursIdle = try idleCost(port: ourPort, pids: [ours.processIdentifier], counts: [10_000, 19_000])
        let nginxIdle = try idleCost(port: nginxPort, pids: nginxWorkers, counts: [10_000, 19_000])
        var idleJSON = ""
        for (index, count) in [10_000, 19_000].enumerated() {
            print(String(format: "RSS per idle keep-alive connection at %d: deltacast %.0f bytes, nginx %.0f bytes", count, oursIdle[index], nginxIdle[index]))
            idleJSON += String(format: ",\"idle_rss_per_connection_%d\":{\"deltacast\":%.0f,\"nginx\":%.0f}", count, oursIdle[index], nginxIdle[index])
        }

        print("HTTP/1.1 keep-alive, GET \(path) (\(body.utf8.count)-byte body), wrk -t1 -c\(connections) -d\(duration)s on CPU \(clientCPUs), servers on CPU \(serverCPUs), \(workers) worker(s) each")
        var results: [String: [Double]] = [:]
        for round in 1...rounds {
            for (name, port, pids) in [("deltacast", ourPort, [ours.processIdentifier]), ("nginx", nginxPort, nginxWorkers)] {
                let cpuBefore = pids.map(cpuSeconds).reduce(0, +)
                let rate = try wrk(port: port, connections: connections, duration: duration, cpus: clientCPUs)
                let cpu = pids.map(cpuSeconds).reduce(0, +) - cpuBefore
                results[name, default: []].append(rate)
                print(String(format: "round %d  %-9@  %9.0f requests/s  server CPU %.2f s", round, name as NSString, rate, cpu))
            }
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let oursRate = median(results["deltacast"]!), nginxRate = median(results["nginx"]!)
        print(String(format: "median: deltacast %.0f, nginx %.0f requests/s; ratio %.2fx", oursRate, nginxRate, oursRate / nginxRate))

        var json = String(format: "{\"bench\":\"http\",\"deltacast_rps\":%.0f,\"nginx_rps\":%.0f,\"ratio\":%.3f", oursRate, nginxRate, oursRate / nginxRate)
        json += idleJSON
        print(json + "}")
    }

    static func launch(_ path: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    static func waitUntilListening(port: Int) throws {
        for _ in 0..<100 {
            if let fd = try? connectLoopback(port: port) { close(fd); return }
            usleep(50_000)
        }
        throw Failure(description: "nothing listens on 127.0.0.1:\(port) after 5 s")
    }

    static func connectLoopback(port: Int) throws -> Int32 { try Socket.connect(port: port) }

    static func wrk(port: Int, connections: Int, duration: Int, cpus: String) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        process.arguments = ["-c", cpus, "/usr/bin/wrk", "-t1", "-c\(connections)", "-d\(duration)s", "http://127.0.0.1:\(port)\(path)"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Requests/sec:") }),
              let rate = Double(line.split(separator: " ").last ?? "") else {
            throw Failure(description: "wrk printed no Requests/sec: \(text)")
        }
        if text.contains("Non-2xx") { throw Failure(description: "wrk saw non-2xx answers: \(text)") }
        return rate
    }

    /// utime + stime of `pid`, in seconds.
    static func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func rssBytes(_ pid: Int32) -> Double { statusBytes(pid, "VmRSS:") }
    /// The process's peak resident set (VmHWM), bytes.
    static func peakRSSBytes(_ pid: Int32) -> Double { statusBytes(pid, "VmHWM:") }

    /// A `kB` field of /proc/PID/status, in bytes (0 when the process is gone).
    private static func statusBytes(_ pid: Int32, _ field: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
              let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kilobytes * 1024
    }

    static func childPIDs(of pid: Int32) -> [Int32] {
        let path = "/proc/\(pid)/task/\(pid)/children"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: " ").compactMap { Int32($0) }
    }

    /// Opens keep-alive connections (each served one request) up to each of `counts` in turn,
    /// and returns the server's RSS growth per connection at each, from one baseline; then
    /// closes them all.
    static func idleCost(port: Int, pids: [Int32], counts: [Int]) throws -> [Double] {
        func rss() -> Double { pids.map(rssBytes).reduce(0, +) }
        let before = rss()
        var sockets: [Int32] = []
        sockets.reserveCapacity(counts.max() ?? 0)
        defer { for fd in sockets { close(fd) } }
        let request = Array("GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n".utf8)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var results: [Double] = []
        for count in counts {
            while sockets.count < count {
                let fd = try connectLoopback(port: port)
                sockets.append(fd)
                _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard read(fd, &buffer, buffer.count) > 0 else { throw Failure(description: "no answer on connection \(sockets.count) to port \(port)") }
            }
            usleep(200_000)  // let the server settle; a measurement, not a test
            results.append((rss() - before) / Double(count))
        }
        return results
    }
}
