import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// `iwae score`: each row's log-likelihood estimate, streamed.
struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write each row's log-likelihood estimate L_k and its Monte Carlo standard error, in the data's units and the input's row order (.csv, .jsonl or .npy), streamed in bounded memory.")

    @Argument(help: "Training output directory (or a model.safetensors file).") var checkpoint: String
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var estimation: EstimationOptions
    @Option(help: "The scores: .csv (row,log_likelihood,standard_error), .jsonl (one object per row) or .npy (rows × 2 float64: log-likelihood, standard error).")
    var out: String

    func run() throws {
        let (samples, k, seed) = (try estimation.samples(), estimation.k, estimation.seed)
        let format = try ScoreFormat(out)
        try checkWritableFile(out, option: "--out")
        let loaded = try Checkpoint.load(from: checkpoint)
        let (name, rows) = try ScoreRows.open(dataOptions, checkpoint: loaded)
        let workers = try estimation.workers(loaded)
        let file = try AtomicFile(out)
        try file.append(format.header(rows: rows.count))
        let stop = SignalFlag.install()
        // Chunks start at multiples of a pass: the rows of every pass, and so
        // the bits, are `evaluate`'s. At most 8,192 rows and about 4·10⁶ draws
        // a chunk: bounded memory, and a stop request is seen within seconds.
        let perPass = samples.examplesPerPass()
        let chunk = perPass * Swift.max(1, Swift.min(8192, (1 << 22) / k) / perPass)
        let started = Date()
        var sum = 0.0
        var start = 0
        while let part = try rows.next(chunk) {
            let n = part.count
            let x = loaded.model.evaluationRows(part, firstRow: start)
            let done = start
            let estimate = try workers.estimateLogLikelihood(x.matrix, samples: samples, seed: seed, firstRow: start) { inChunk in
                let elapsed = Date().timeIntervalSince(started)
                ProgressBar.draw("scoring k=\(k)", done: done + inChunk, total: rows.count,
                                 detail: "\(formatted(Double(done + inChunk) / max(elapsed, 1e-9), 1)) rows/s")
            }.shifted(by: part.logJacobian)
            if let bad = estimate.logLikelihoods.firstIndex(where: { !$0.isFinite }) {
                throw IWAEError.numerical("row \(start + bad) of \(name): the log-likelihood estimate is not finite (\(estimate.logLikelihoods[bad])); nothing was written")
            }
            try file.append(format.lines(estimate, firstRow: start))
            sum += estimate.logLikelihoods.reduce(0, +)
            start += n
            if stop.isSet { throw IWAEError.interrupted("scoring stopped at row \(start) of \(rows.count); \(out) was not written") }
        }
        guard start == rows.count else { throw IWAEError.invalidData("\(name) changed while it was read (\(start) rows, not \(rows.count))") }
        try file.commit()
        ProgressBar.finishLine()
        let seconds = Date().timeIntervalSince(started)
        print("scored \(rows.count) rows of \(name) with k=\(k): mean log-likelihood \(formatted(sum / Double(rows.count))) nats\(rows.inDataUnits ? " (the data's units)" : ""); wrote \(out) in \(formatted(seconds, 1)) s")
    }
}

/// The rows `score` reads, a chunk at a time: a CSV or TSV file of a table
/// run parsed chunk by chunk (memory bounded whatever its length), anything
/// else sliced from the rows `evaluate` would read (a `.npy` is mapped).
final class ScoreRows {
    let count: Int
    let inDataUnits: Bool
    private let take: (Int) throws -> Examples?

    private init(count: Int, inDataUnits: Bool, take: @escaping (Int) throws -> Examples?) {
        self.count = count
        self.inDataUnits = inDataUnits
        self.take = take
    }

    /// The next rows, at most `n` (nil at the end).
    func next(_ n: Int) throws -> Examples? {
        try take(n)
    }

    static func open(_ option: DataOptions, checkpoint: Checkpoint) throws -> (name: String, rows: ScoreRows) {
        if let path = option.data, [".csv", ".tsv", ".tab"].contains(where: path.lowercased().hasSuffix),
           case .table(let table)? = checkpoint.data, let encoding = table.encoding {
            if option.dataKey != nil { throw IWAEError.invalidArgument("--data-key is for .npz and .safetensors files") }
            let reader = try DelimitedTextReader(contentsOf: path, columns: table.columns)
            let expected = checkpoint.model.configuration.dataDimension
            guard reader.columns == expected else {
                throw IWAEError.invalidArgument("\(path) has \(reader.columns) features but the training data has \(expected)")
            }
            let rows = ScoreRows(count: reader.remainingRows(), inDataUnits: encoding.logJacobian != 0) { n in
                try reader.next(rows: n).map { .table(try DataTable($0, encoding: encoding)) }
            }
            return (path, rows)
        }
        let (name, examples) = try loadTestSet(option, checkpoint: checkpoint)
        var start = 0
        let rows = ScoreRows(count: examples.count, inDataUnits: examples.logJacobian != 0) { n in
            guard start < examples.count else { return nil }
            defer { start = Swift.min(examples.count, start + n) }
            return examples.rows(start..<Swift.min(examples.count, start + n))
        }
        return (name, rows)
    }
}

/// The file formats of `iwae score`, by the extension of `--out`.
enum ScoreFormat {
    case csv, jsonl, npy

    init(_ path: String) throws {
        let lower = path.lowercased()
        if lower.hasSuffix(".csv") { self = .csv }
        else if lower.hasSuffix(".jsonl") { self = .jsonl }
        else if lower.hasSuffix(".npy") { self = .npy }
        else { throw IWAEError.invalidArgument("--out \(path): write scores to a .csv, .jsonl or .npy file") }
    }

    /// What comes before the rows.
    func header(rows: Int) -> [UInt8] {
        switch self {
        case .csv: return Array("row,log_likelihood,standard_error\n".utf8)
        case .jsonl: return []
        case .npy: return NPY.header(Double.self, shape: [rows, 2])
        }
    }

    /// The rows of `estimate`, numbered from `firstRow`.
    func lines(_ estimate: LogLikelihoodEstimate, firstRow: Int) -> [UInt8] {
        switch self {
        case .npy:
            var values = [Double]()
            values.reserveCapacity(2 * estimate.examples)
            for i in 0..<estimate.examples { values += [estimate.logLikelihoods[i], estimate.standardErrors[i]] }
            return values.withUnsafeBytes { Array($0) }
        case .csv:
            return Array(estimate.logLikelihoods.indices.map { i in
                "\(firstRow + i),\(estimate.logLikelihoods[i]),\(estimate.standardErrors[i].isFinite ? "\(estimate.standardErrors[i])" : "nan")\n"
            }.joined().utf8)
        case .jsonl:
            return Array(estimate.logLikelihoods.indices.map { i in
                jsonLine([("row", firstRow + i), ("log_likelihood", estimate.logLikelihoods[i]), ("standard_error", estimate.standardErrors[i])]) + "\n"
            }.joined().utf8)
        }
    }
}
