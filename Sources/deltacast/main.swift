import DeltacastCommandLine
import Foundation

/// The `deltacast` command: dispatches to a subcommand.
let version = "0.1.0"
let commands: [any Command.Type] = [
    ServeCommand.self, CheckCommand.self, DemoCommand.self, SimulateCommand.self, TailCommand.self, TopCommand.self, ReportCommand.self, BenchCommand.self,
    DiffCommand.self, PatchCommand.self, DiscoverCommand.self, TypesCommand.self,
]

@MainActor func generalUsage() -> String {
    var text = "usage: deltacast COMMAND [options]\n\nCommands:\n"
    let width = commands.map { $0.name.count }.max()! + 2
    for command in commands {
        text += "  \(command.name.padding(toLength: width, withPad: " ", startingAt: 0))\(command.summary)\n"
    }
    text += "\nOptions:\n  --help     show help (also: deltacast COMMAND --help)\n  --version  print the version\n"
    return text
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let first = arguments.first else {
    printError(generalUsage())
    exit(ExitStatus.usage.rawValue)
}
switch first {
case "--help", "-h", "help":
    print(generalUsage(), terminator: "")
    exit(0)
case "--version":
    print("deltacast \(version)")
    exit(0)
default:
    guard let command = commands.first(where: { $0.name == first }) else {
        printError("deltacast: unknown command '\(first)'\n\n\(generalUsage())")
        exit(ExitStatus.usage.rawValue)
    }
    let rest = Array(arguments.dropFirst())
    if rest.contains("--help") || rest.contains("-h") {
        print(command.usage)
        exit(0)
    }
    do {
        exit(try command.run(rest).rawValue)
    } catch {
        printError("deltacast \(command.name): \(error.message)\n\n\(command.usage)")
        exit(ExitStatus.usage.rawValue)
    }
}
