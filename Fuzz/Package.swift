// swift-tools-version: 6.0
// libFuzzer targets for every parser of untrusted input (issue #13). Built apart from the main
// package because libFuzzer supplies `main`: `bash Scripts/fuzz.sh TARGET|all SECONDS`.
import PackageDescription

let package = Package(
    name: "FireQFuzz",
    dependencies: [.package(name: "FireQ", path: "..")],
    targets: [
        .executableTarget(name: "fireq-fuzz", dependencies: [.product(name: "FireQCore", package: "FireQ")]),
    ],
    swiftLanguageModes: [.v6]
)
