import DeltacastClient
import DeltacastJSON
import DeltacastLoop
import DeltacastTestSupport
import DeltacastWire
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `curl`-free HTTP for tests: one request on a new connection, the whole response back.
func httpRequest(port: Int, _ text: String) throws -> (status: Int, head: String, body: String) {
    let client = try RawClient(port: port)
    client.send(text)
    let response = client.read(responses: 1).texts.first ?? ""
    let parts = response.components(separatedBy: "\r\n\r\n")
    let status = Int(response.dropFirst(9).prefix(3)) ?? 0
    return (status, parts.first ?? "", parts.dropFirst().joined(separator: "\r\n\r\n"))
}

/// Publishes `body` to `topic` with the admin token the transport tests configure.
@discardableResult
func publish(port: Int, _ topic: String, _ body: String, token: String? = adminToken, contentType: String = "application/json") throws -> (status: Int, body: String) {
    var request = "POST /deltacast/publish?topic=\(topic) HTTP/1.1\r\nHost: a\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n"
    if let token { request += "Authorization: Bearer \(token)\r\n" }
    let response = try httpRequest(port: port, request + "\r\n" + body)
    return (response.status, response.body)
}

let adminToken = "test-admin-token-0123456789"

/// A string member of a JSON object.
extension JSONObject {
    func string(_ key: String) -> String? {
        if case .string(let text)? = self[key] { return text }
        return nil
    }
}
