import ArgumentParser
import Foundation
import IWAECore
import IWAEData
import IWAELinearAlgebra

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train VAE and IWAE for several K with the same seed and budget; report test NLL (k=5000).")

    func run() throws {
        print("not yet")
    }
}
