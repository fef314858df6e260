import Foundation

/// A trained model on disk: `DIR/model.safetensors`.
///
/// Tensors: the model's parameters by name (`encoder.0.weight` (out, in), …,
/// F32), and for a resumable run `optimizer.first_moment`,
/// `optimizer.second_moment` (F32) and `trainer.order` (I32). `__metadata__`
/// holds typed JSON: `model` (`ModelConfiguration`), `data` (`DataSource`),
/// `image` (width, height), `training` (`TrainingRecord`), `state`
/// (`TrainingState` without its order) and `optimizer_step`, or for a model
/// saved without its run's state `plan` (its `ComputePlan`), plus CRC-32s of
/// the tensor bytes and of the metadata, both required, so that corruption
/// is refused instead of half-loaded.
public struct Checkpoint {
    public static let fileName = "model.safetensors"
    package static let formatName = "iwae-checkpoint"
    /// 3: typed JSON metadata with named keys throughout (the `CheckpointFormat` article
    /// is the schema). Version 2 (the same, but a data source in Swift's
    /// synthesized form) is read and resumed; version 1 (string fields) is
    /// read for evaluation and sampling only.
    package static let formatVersion = 3

    public var model: VariationalAutoencoder<Float>
    /// The data set the model was trained on, when known.
    public var data: DataSource?
    /// Image width and height at training time (for PNG output).
    public var imageSize: ImageSize?
    /// How the model was trained (nil for a bare model or a version-1 file).
    public var training: TrainingRecord?
    public var optimizer: OptimizerState?
    /// Why the run cannot be resumed from this checkpoint although its
    /// parameters load (the optimizer state, the training state or the
    /// training record is damaged or forged; that part is left out), or nil.
    /// `evaluate` and `sample` work, and only `--resume` is refused, with this reason.
    package var resumeDamage: String?
    /// Where the run stands, for resuming.
    public var trainingState: TrainingState?

    public struct ImageSize: Codable, Equatable, Sendable {
        public var width: Int
        public var height: Int
        public init(width: Int, height: Int) { self.width = width; self.height = height }

        enum CodingKeys: String, CodingKey { case width, height }

        public init(from decoder: Decoder) throws {
            try decoder.refuseUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(width: try c.decode(Int.self, forKey: .width), height: try c.decode(Int.self, forKey: .height))
        }

        /// Checks that the images are `dimension` pixels, width × height.
        package func validate(dimension: Int) throws {
            guard width >= 1, height >= 1, CheckedSize.product([width, height]) == dimension else {
                throw IWAEError.invalidArgument("an image of \(width) × \(height) pixels does not hold the model's \(dimension) values")
            }
        }
    }

    public init(model: VariationalAutoencoder<Float>, data: DataSource? = nil, imageSize: ImageSize? = nil,
                training: TrainingRecord? = nil, optimizer: Adam<Float>? = nil, trainingState: TrainingState? = nil) {
        self.model = model
        self.data = data
        self.imageSize = imageSize
        self.training = training
        self.optimizer = optimizer.map(OptimizerState.init)
        self.trainingState = trainingState
    }

    /// Tensors a checkpoint may carry besides the model's parameters.
    static let trainingTensors: Set<String> = ["optimizer.first_moment", "optimizer.second_moment", "trainer.order"]

    /// The checkpoint file for a path that is either a directory or the file itself.
    package static func path(for location: String) -> String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: location, isDirectory: &isDirectory), !isDirectory.boolValue {
            return location
        }
        return location + "/" + fileName
    }

    // MARK: Writing

    package func encoded() -> [UInt8] {
        let store = model.store
        var entries = store.layout.slots.map { slot in
            SafetensorsEntry(name: slot.name, shape: slot.shape,
                             values: UnsafeBufferPointer(start: store.value(slot), count: slot.count))
        }
        var metadata = ["format": Checkpoint.formatName, "format_version": String(Checkpoint.formatVersion),
                        "model": Checkpoint.json(model.configuration)]
        if let data { metadata["data"] = Checkpoint.json(data) }
        if let imageSize { metadata["image"] = Checkpoint.json(imageSize) }
        if let training { metadata["training"] = Checkpoint.json(training) }
        if let optimizer {
            entries.append(optimizer.firstMoment.withUnsafeBufferPointer { SafetensorsEntry(name: "optimizer.first_moment", shape: [$0.count], values: $0) })
            entries.append(optimizer.secondMoment.withUnsafeBufferPointer { SafetensorsEntry(name: "optimizer.second_moment", shape: [$0.count], values: $0) })
            metadata["optimizer_step"] = String(optimizer.step)
        }
        if var state = trainingState {
            if !state.order.isEmpty {
                entries.append(SafetensorsEntry(name: "trainer.order", dtype: "I32", shape: [state.order.count],
                                                bytes: state.order.withUnsafeBytes { Array($0) }))
            }
            state.order = []
            metadata["state"] = Checkpoint.json(state)
        } else {
            // A model saved without its run keeps the kernels it computes with.
            metadata["plan"] = Checkpoint.json(model.plan)
        }
        metadata["checksum_crc32"] = String(Checkpoint.checksum(entries))
        metadata["metadata_crc32"] = String(Checkpoint.metadataChecksum(metadata))
        return SafetensorsFile(metadata: metadata, entries: entries).encoded()
    }

    /// Writes the checkpoint into `directory` (created with its parents if
    /// missing) atomically (temporary file, fsync, rename): the previous
    /// checkpoint stays until the new one is whole.
    public func save(to directory: String) throws {
        do {
            _ = try prepareOutputDirectory(directory)
            try writeFileAtomically(encoded(), to: directory + "/" + Checkpoint.fileName)
        }
        catch let error as DataError { throw IWAEError.writeFailed(error.description) }
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(value), as: UTF8.self)
    }

    /// `file` with both checksums recomputed: for tools (and fuzzers) that
    /// change a checkpoint on purpose and want its contents checked, not its sums.
    package static func resealed(_ file: SafetensorsFile) -> SafetensorsFile {
        var file = file
        file.metadata["checksum_crc32"] = String(checksum(file.entries))
        file.metadata["metadata_crc32"] = String(metadataChecksum(file.metadata))
        return file
    }

    /// CRC-32 of the metadata (sorted `key=value` lines, checksums excluded).
    static func metadataChecksum(_ metadata: [String: String]) -> UInt32 {
        let text = metadata.keys.sorted().filter { $0 != "checksum_crc32" && $0 != "metadata_crc32" }
            .map { "\($0)=\(metadata[$0]!)\n" }.joined()
        return crc32Checksum(Array(text.utf8)[...])
    }

    static func checksum(_ entries: [SafetensorsEntry]) -> UInt32 {
        var crc: UInt32 = 0
        for e in entries { crc = e.bytes.withUnsafeBufferPointer { crc32Continue(crc, $0) } }
        return crc
    }
}
