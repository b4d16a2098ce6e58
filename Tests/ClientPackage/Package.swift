// swift-tools-version:6.0
// Another package using the DeltacastClient library product, as an app would: CI builds it
// (suite client-package), so the product and its public API stay usable from outside.
import PackageDescription

let package = Package(
    name: "ClientPackage",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "Deltacast", path: "../..")],
    targets: [
        .executableTarget(name: "ClientPackage", dependencies: [.product(name: "DeltacastClient", package: "Deltacast")]),
    ]
)
