import DeltacastConfig
import DeltacastServer
import Dispatch
import Foundation

/// Starts the server for `configuration`, prints where it listens, and blocks until SIGTERM or
/// SIGINT, then shuts down gracefully (in-flight responses finish, within the deadline).
func runServer(_ configuration: Configuration, command: String, dashboard: Bool = false, started: (Int) -> Void = { _ in }) -> ExitStatus {
    raiseOpenFileLimit()
    let server: HTTPServer
    let port: Int
    do {
        server = try HTTPServer(configuration: configuration, dashboard: dashboard)
        port = try server.start()
    } catch {
        printError("deltacast \(command): cannot start: \(error)")
        return .failure
    }
    print("deltacast: listening on http://\(HostPort(host: configuration.listen.host, port: port))")
    started(port)
    fflush(nil)
    waitForTermination()
    print("deltacast: shutting down")
    fflush(nil)
    server.shutdown()
    print("deltacast: stopped")
    return .success
}
