// swift-tools-version:6.0
// Deltacast: a polling-to-push migration proxy. No third-party Swift packages: Foundation,
// Dispatch, Glibc, Swift Testing, and C system libraries through the C* targets below.
import PackageDescription

// Each target declares exactly the modules it imports (DESIGN.md's graph; the README's layout).

/// Settings every Swift target shares: Swift 6 language mode (strict concurrency) and the
/// upcoming features that make code clearer to read.
let sharedSwiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// The Swift client's sockets I/O: WebSocket, SSE and long-poll over the client's own sockets
/// and OpenSSL. Linux builds it, unless `DELTACAST_CLIENT_IO=foundation`: that configuration
/// is the one Apple platforms build (Foundation's `URLSession` for SSE and long-poll, nothing
/// else), and CI builds and runs it on Linux too (suite client-package).
let clientSockets = Context.environment["DELTACAST_CLIENT_IO"] != "foundation"
let clientSocketDependencies: [Target.Dependency] = clientSockets
    ? ["COpenSSL", "DeltacastLoop", "DeltacastTLS", "DeltacastWire"].map { .target(name: $0, condition: .when(platforms: [.linux])) }
    : []
let clientSocketSettings: [SwiftSetting] = clientSockets ? [.define("DELTACAST_SOCKETS", .when(platforms: [.linux]))] : []

let package = Package(
    name: "Deltacast",
    products: [
        .executable(name: "deltacast", targets: ["deltacast"]),
        .library(name: "DeltacastJSON", targets: ["DeltacastJSON"]),
        .library(name: "DeltacastConfig", targets: ["DeltacastConfig"]),
        .library(name: "DeltacastWire", targets: ["DeltacastWire"]),
        // The Swift client for apps: `.product(name: "DeltacastClient", package: "deltacast")`.
        .library(name: "DeltacastClient", targets: ["DeltacastClient"]),
        // libFuzzer targets: see README "Fuzzing".
        .executable(name: "FuzzConfig", targets: ["FuzzConfig"]),
        .executable(name: "FuzzJSON", targets: ["FuzzJSON"]),
        .executable(name: "FuzzHTTP", targets: ["FuzzHTTP"]),
        .executable(name: "FuzzWebSocket", targets: ["FuzzWebSocket"]),
        .executable(name: "FuzzRESP", targets: ["FuzzRESP"]),
        .executable(name: "FuzzPatch", targets: ["FuzzPatch"]),
        .executable(name: "FuzzAllow", targets: ["FuzzAllow"]),
        .executable(name: "FuzzJWT", targets: ["FuzzJWT"]),
        .executable(name: "FuzzQuery", targets: ["FuzzQuery"]),
        .executable(name: "FuzzCursor", targets: ["FuzzCursor"]),
    ],
    targets: [
        // C system libraries. `providers` makes a missing -dev package name itself.
        .systemLibrary(
            name: "CSystemLinux", path: "Sources/CSystemLinux"),
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),

        // The foundation every layer may use: `Locked` and the clocks.
        .target(name: "DeltacastBase", swiftSettings: sharedSwiftSettings),
        // The digests, HMAC and random bytes (SHA-1 in Swift, the rest through OpenSSL).
        .target(name: "DeltacastCrypto", dependencies: ["COpenSSL"], swiftSettings: sharedSwiftSettings),
        .target(name: "DeltacastJSON", swiftSettings: sharedSwiftSettings),
        .target(name: "DeltacastConfig", swiftSettings: sharedSwiftSettings),
        .target(name: "DeltacastLoop", dependencies: ["CSystemLinux", "DeltacastBase"], swiftSettings: sharedSwiftSettings),
        .target(name: "DeltacastWire", dependencies: ["CZlib", "DeltacastCrypto", "DeltacastJSON"], swiftSettings: sharedSwiftSettings),
        .target(
            name: "DeltacastUpstream", dependencies: ["CCurl", "DeltacastBase", "DeltacastLoop"],
            swiftSettings: sharedSwiftSettings),
        .target(
            name: "DeltacastHub", dependencies: ["DeltacastBase", "DeltacastConfig", "DeltacastCrypto", "DeltacastJSON", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        // Cluster mode on Redis: the RESP2 codec, a Redis client on an event loop, leases,
        // the shared history (between the Hub and the Server).
        .target(
            name: "DeltacastCluster", dependencies: ["DeltacastBase", "DeltacastConfig", "DeltacastCrypto", "DeltacastHub", "DeltacastJSON", "DeltacastLoop", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        // TLS sessions over our sockets (OpenSSL): the server's, and the client's below.
        .target(name: "DeltacastTLS", dependencies: ["COpenSSL", "DeltacastBase", "DeltacastLoop"], swiftSettings: sharedSwiftSettings),
        .target(
            name: "DeltacastServer", dependencies: ["COpenSSL", "CSystemLinux", "DeltacastBase", "DeltacastCluster", "DeltacastConfig", "DeltacastCrypto", "DeltacastDiscovery", "DeltacastHub", "DeltacastJSON", "DeltacastLoop", "DeltacastTLS", "DeltacastWire"],
            // The client library and the demo dashboard, compiled into the binary as bytes.
            resources: [.embedInCode("Client/deltacast.js"), .embedInCode("Client/deltacast.d.ts"), .embedInCode("Client/dashboard.html"), .embedInCode("Client/status.html")],
            swiftSettings: sharedSwiftSettings),
        // A push client: connections (verifying TLS), the handshakes, an SSE parser, blocking
        // WebSocket and SSE clients. `tail`, `top`, the benchmarks and the tests use it.
        .target(
            name: "DeltacastClient", dependencies: ["DeltacastBase", "DeltacastJSON"] + clientSocketDependencies,
            swiftSettings: sharedSwiftSettings + clientSocketSettings),
        // Composition: the upstream poller as the server's topic source (the server does not
        // import DeltacastUpstream).
        .target(
            name: "DeltacastPolling", dependencies: ["DeltacastBase", "DeltacastConfig", "DeltacastHub", "DeltacastJSON", "DeltacastLoop", "DeltacastUpstream", "DeltacastServer", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        // The simulated legacy API: the demo's upstream, and the tests' and benchmarks'.
        .target(
            name: "DeltacastSimulator", dependencies: ["DeltacastBase", "DeltacastLoop", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        // Argument parsing and exit statuses, shared by the commands and the benchmarks.
        .target(name: "DeltacastCommandLine", swiftSettings: sharedSwiftSettings),
        // What `deltacast discover` infers from an endpoint's samples (array keys, volatile fields).
        .target(name: "DeltacastDiscovery", dependencies: ["DeltacastJSON"], swiftSettings: sharedSwiftSettings),
        // `deltacast bench`: the load generator and every benchmark.
        .target(
            name: "DeltacastBench",
            dependencies: ["CSystemLinux", "DeltacastBase", "DeltacastClient", "DeltacastCommandLine", "DeltacastConfig", "DeltacastHub", "DeltacastJSON", "DeltacastLoop", "DeltacastPolling", "DeltacastServer", "DeltacastSimulator", "DeltacastTLS", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        // The executable: a thin list of commands.
        .executableTarget(
            name: "deltacast",
            dependencies: ["DeltacastBase", "DeltacastBench", "DeltacastClient", "DeltacastCluster", "DeltacastCommandLine", "DeltacastConfig", "DeltacastDiscovery", "DeltacastJSON", "DeltacastLoop", "DeltacastPolling", "DeltacastServer", "DeltacastSimulator", "DeltacastTLS", "DeltacastUpstream"],
            swiftSettings: sharedSwiftSettings),

        .executableTarget(
            name: "FuzzConfig", dependencies: ["DeltacastConfig"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzJSON", dependencies: ["DeltacastJSON"],
            swiftSettings: sharedSwiftSettings),

        .target(
            name: "DeltacastTestSupport", dependencies: ["DeltacastClient", "DeltacastLoop"], path: "Tests/DeltacastTestSupport",
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastConfigTests", dependencies: ["DeltacastConfig", "DeltacastTestSupport"],
            exclude: ["Malformed", "Valid"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastJSONTests", dependencies: ["DeltacastJSON", "DeltacastTestSupport"],
            exclude: ["Fixtures"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzHTTP", dependencies: ["DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzWebSocket", dependencies: ["DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzRESP", dependencies: ["DeltacastCluster"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzPatch", dependencies: ["DeltacastJSON"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzAllow", dependencies: ["DeltacastConfig"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzJWT", dependencies: ["DeltacastConfig", "DeltacastJSON", "DeltacastServer", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzQuery", dependencies: ["DeltacastConfig", "DeltacastHub", "DeltacastServer", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "FuzzCursor", dependencies: ["DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastLoopTests", dependencies: ["DeltacastBase", "DeltacastLoop"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastServerTests", dependencies: ["DeltacastBase", "DeltacastServer", "DeltacastPolling", "DeltacastUpstream", "DeltacastClient", "DeltacastConfig", "DeltacastHub", "DeltacastJSON", "DeltacastLoop", "DeltacastWire", "DeltacastTestSupport"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastHubTests", dependencies: ["DeltacastBase", "DeltacastConfig", "DeltacastHub", "DeltacastJSON", "DeltacastLoop", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastUpstreamTests", dependencies: ["DeltacastBase", "DeltacastClient", "DeltacastUpstream", "DeltacastLoop"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastClusterTests", dependencies: ["DeltacastBase", "DeltacastClient", "DeltacastCluster", "DeltacastConfig", "DeltacastHub", "DeltacastLoop"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            // It runs the built executable, so it depends on it being built.
            name: "DeltacastClientTests", dependencies: ["deltacast", "DeltacastClient", "DeltacastTestSupport", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastCryptoTests", dependencies: ["DeltacastCrypto"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastWireTests", dependencies: ["DeltacastCrypto", "DeltacastWire"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "DeltacastDiscoveryTests", dependencies: ["DeltacastDiscovery", "DeltacastJSON"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            // It runs the built executable, so it depends on it being built.
            name: "DeltacastCLITests", dependencies: ["deltacast", "DeltacastTestSupport"],
            swiftSettings: sharedSwiftSettings),
    ]
)
