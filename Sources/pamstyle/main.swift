import ArgumentParser
import Foundation
import Netpbm
import StyleTransfer

// pamstyle: parse the command line, check it, load the network, compute the style targets, then for
// each image of standard input: read, stylize, write.

let command = Command.parseOrExitOneLine()
if command.version {
    print("pamstyle \(pamstyleVersion)")
    exit(0)
}
let report = Reporter(quiet: command.quiet, verbose: command.verbose)
let outcome = Runner(command: command, report: report).run()
exit(outcome)
