import DeltacastCrypto
import DeltacastWire

/// A file compiled into the binary (SwiftPM `embedInCode`), served with a content hash as its
/// `ETag`, `304` on `If-None-Match`, and a day of `Cache-Control`.
struct StaticAsset: Sendable {
    let bytes: [UInt8]
    let contentType: String
    let etag: String
    let cacheControl: String

    init(bytes: [UInt8], contentType: String, cacheControl: String) {
        self.bytes = bytes
        self.contentType = contentType
        self.cacheControl = cacheControl
        self.etag = "\"" + Hex.encode(SHA1.digest(bytes).prefix(10)) + "\""
    }

    /// `/deltacast.js` (a classic script defining `globalThis.Deltacast`), or `/deltacast.mjs`:
    /// the same file with a module binding of that global and its exports, for
    /// `import { Deltacast } from "/deltacast.mjs"`.
    static func clientLibrary(module: Bool) -> StaticAsset { module ? moduleLibrary : classicLibrary }

    private static let classicLibrary = StaticAsset(
        bytes: PackageResources.deltacast_js, contentType: "text/javascript; charset=utf-8", cacheControl: "public, max-age=86400")
    private static let moduleLibrary = StaticAsset(
        bytes: PackageResources.deltacast_js + Array("\nconst Deltacast = globalThis.Deltacast;\nexport { Deltacast };\nexport default Deltacast;\n".utf8),
        contentType: "text/javascript; charset=utf-8", cacheControl: "public, max-age=86400")

    /// `/deltacast.d.ts`: the TypeScript declarations of both, cached like them.
    static let clientDeclarations = StaticAsset(
        bytes: PackageResources.deltacast_d_ts, contentType: "application/typescript; charset=utf-8", cacheControl: "public, max-age=86400")

    /// The status page at `/deltacast/` (its data needs the admin token).
    static let statusPage = StaticAsset(
        bytes: PackageResources.status_html, contentType: "text/html; charset=utf-8", cacheControl: "no-cache")

    /// The demo dashboard (`deltacast demo` serves it at `/`).
    static let dashboard = StaticAsset(
        bytes: PackageResources.dashboard_html, contentType: "text/html; charset=utf-8", cacheControl: "no-cache")

    func response(to request: HTTPRequestHead) -> RoutedResponse {
        var headers: HTTPHeaders = ["ETag": etag]
        headers.add(name: "Cache-Control", value: cacheControl)
        if let match = request.headers["If-None-Match"], MirroredRead.etagMatches(match, etag) {
            return RoutedResponse(status: 304, headers: headers, body: [])
        }
        headers.add(name: "Content-Type", value: contentType)
        return RoutedResponse(status: 200, headers: headers, body: bytes)
    }
}
