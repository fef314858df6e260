import Foundation

extension Checkpoint {
    /// Loads and validates a checkpoint from a directory or file. The model
    /// gets the compute plan it was trained with (`TrainingState.plan`, in
    /// the precision of its options, or the `plan` of a model saved without
    /// its run), so that it computes as it trained and as it was saved.
    /// (Any kernel reads any checkpoint: the tensors do not depend on it.)
    public static func load(from location: String) throws -> Checkpoint {
        let path = path(for: location)
        guard FileManager.default.fileExists(atPath: path) else {
            throw IWAEError.invalidCheckpoint("no checkpoint at \(location) (expected \(path))")
        }
        let checkpoint: Checkpoint
        do {
            try checkHeaderSize(ofFile: path)
            let bytes = try readFile(path)
            checkpoint = try Checkpoint(try SafetensorsFile(parsing: bytes, name: path), name: path)
        } catch let error as DataError {
            throw IWAEError.invalidCheckpoint(error.description)
        }
        return checkpoint
    }

    /// Rebuilds the model and the run from parsed safetensors, checking
    /// format, version, checksums and every tensor's name, dtype and shape.
    package init(_ file: SafetensorsFile, name: String) throws {
        func fail(_ why: String) -> IWAEError { .invalidCheckpoint("\(name): \(why)") }
        let m = file.metadata
        guard m["format"] == Checkpoint.formatName else { throw fail("not an iwae checkpoint (no format metadata)") }
        guard let version = m["format_version"].flatMap(Int.init) else { throw fail("missing format_version") }
        if version == 1 {
            try self.init(version1: file, fail: fail)
            return
        }
        guard version == 2 || version == Checkpoint.formatVersion else {
            throw fail("format version \(version) is not supported (this build reads versions 1 to \(Checkpoint.formatVersion))")
        }
        guard let stored = m["checksum_crc32"], let storedMetadata = m["metadata_crc32"] else { throw fail("missing checksums") }
        guard String(Checkpoint.checksum(file.entries)) == stored else { throw fail("checksum mismatch: the file is corrupt") }
        guard String(Checkpoint.metadataChecksum(m)) == storedMetadata else {
            throw fail("metadata checksum mismatch: the file is corrupt")
        }
        var dataDimension: Int?
        func decode<T: Codable>(_ type: T.Type, _ key: String) throws -> T? {
            guard let text = m[key] else { return nil }
            let limit = Checkpoint.documentLimit(dataDimension: dataDimension)
            guard text.utf8.count <= limit else {
                throw fail("\(key) metadata is \(text.utf8.count) bytes, more than any checkpoint of this model holds (\(limit)): altered, or not written by iwae")
            }
            if let repeated = firstDuplicateKey(in: text.utf8) {
                throw fail("\(key) metadata has the key \"\(repeated)\" twice (altered, or not written by iwae)")
            }
            let decoder = JSONDecoder()
            decoder.userInfo[refusingUnknownKeys] = version >= 3   // format 2 was written before the policy
            do { return try decoder.decode(T.self, from: Data(text.utf8)) }
            catch let unknown as UnknownKey {
                throw fail("\(key) metadata has a key this version does not know: \(unknown) (written by a newer version, or altered)")
            }
            catch let error as IWAEError { throw fail("\(key) metadata: \(error)") }
            catch { throw fail("bad \(key) metadata") }
        }
        func checked(_ key: String, _ check: () throws -> Void) throws {
            do { try check() } catch { throw fail("\(key) metadata: \(error)") }
        }
        guard let configuration = try decode(ModelConfiguration.self, "model") else { throw fail("missing model metadata") }
        let model = try Checkpoint.model(configuration, from: file, fail: fail)
        dataDimension = configuration.dataDimension
        let imageSize = try decode(ImageSize.self, "image")
        // The record is needed only to resume: a damaged one leaves the parameters readable.
        var training: TrainingRecord?, recordDamage: String?
        do {
            training = try decode(TrainingRecord.self, "training")
            try checked("training") { try training?.validate() }
        } catch let error as IWAEError {
            guard case .invalidCheckpoint(let message) = error else { throw error }
            recordDamage = String(message.dropFirst(name.count + 2))
        }
        if let imageSize { try checked("image") { try imageSize.validate(dimension: configuration.dataDimension) } }
        self.init(model: model, data: try decode(DataSource.self, "data"), imageSize: imageSize,
                  training: recordDamage == nil ? training : nil)
        resumeDamage = recordDamage
        if let m1 = file.entry("optimizer.first_moment"), let m2 = file.entry("optimizer.second_moment") {
            let count = model.store.values.count
            if m1.dtype == "F32", m2.dtype == "F32", m1.shape == [count], m2.shape == m1.shape,
               let step = m["optimizer_step"].flatMap(Int.init), (0...TrainingState.maximumCount).contains(step) {
                let state = OptimizerState(step: step, firstMoment: m1.floatValues, secondMoment: m2.floatValues)
                if state.firstMoment.allSatisfy({ $0.isFinite }), state.secondMoment.allSatisfy({ $0.isFinite && $0 >= 0 }) {
                    optimizer = state
                } else {
                    resumeDamage = "the optimizer's moments contain NaN, infinity or a negative second moment"
                }
            } else {
                resumeDamage = "malformed optimizer state"
            }
        }
        do {
            if var state = try decode(TrainingState.self, "state") {
                guard state.epoch >= 0, state.step >= 0, state.batchInEpoch >= 0, state.seen >= 0, state.generator.count == 4,
                      state.workerGenerators.allSatisfy({ $0.count == 4 }) else { throw fail("malformed training state") }
                if state.batchInEpoch > 0 {
                    guard let order = file.entry("trainer.order"), order.dtype == "I32", order.shape.count == 1 else {
                        throw fail("training state mid-epoch without trainer.order")
                    }
                    state.order = order.bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
                    var present = [Bool](repeating: false, count: state.order.count)
                    for i in state.order {
                        guard i >= 0, Int(i) < present.count, !present[Int(i)] else { throw fail("trainer.order is not a permutation") }
                        present[Int(i)] = true
                    }
                }
                if let training = self.training {
                    try checked("state") { try state.validate(batchSize: training.options.batchSize, trainCount: training.trainCount, optimizerStep: optimizer?.step) }
                }
                trainingState = state
            }
        } catch let error as IWAEError {
            // Only a resumed run needs the state: the parameters stay readable.
            guard case .invalidCheckpoint(let message) = error else { throw error }
            resumeDamage = resumeDamage ?? String(message.dropFirst(name.count + 2))
        }
        let precision = training?.options.precision ?? .fp32
        if let plan = trainingState?.plan {
            model.plan = try plan.recorded(for: precision)
        } else {
            model.plan = try decode(ComputePlan.self, "plan") ?? ComputePlan(precision: precision)
        }
    }

    /// Refuses, before anything else is read, a safetensors header longer
    /// than any iwae writes for the tensors that follow it: 4 MiB, and 64
    /// bytes per byte of tensors. Only the file's first 8 bytes and its size
    /// are read. (A checkpoint's header grows with the data's features, each
    /// of which has at least three floats of parameters, 12 bytes, against
    /// at most a few hundred bytes of metadata.)
    static func checkHeaderSize(ofFile path: String) throws {
        let (fd, info) = try openRegularFile(path)
        defer { close(fd) }
        var prefix = [UInt8](repeating: 0, count: 8)
        guard read(fd, &prefix, 8) == 8 else { return }   // the parser says what is wrong
        let length = SafetensorsFile.headerLength(prefix), size = Int(info.st_size)
        guard length <= UInt64(size - 8) else { return }
        let tensors = size - 8 - Int(length)
        let limit = (4 << 20) + 64 * tensors
        if Int(length) > limit {
            throw IWAEError.invalidCheckpoint("\(path): the header is \(length) bytes for \(tensors) bytes of tensors, more than any checkpoint holds (\(limit)): altered, or not written by iwae")
        }
    }

    /// The most bytes a metadata document may hold: 1 MiB, and 1 KiB more
    /// per feature of the model's data once the model is read (a table's
    /// columns and statistics). What iwae writes is far below it (a model
    /// document is a few hundred bytes); a larger document is refused
    /// before it is parsed, so that reading a header costs memory in
    /// proportion to it, not to what its arrays claim.
    static func documentLimit(dataDimension: Int?) -> Int {
        (1 << 20) + 1024 * Swift.min(dataDimension ?? 0, 1 << 30)
    }

    /// A model of `configuration` with its parameters read from `file`.
    static func model(_ configuration: ModelConfiguration, from file: SafetensorsFile,
                      fail: (String) -> IWAEError) throws -> VariationalAutoencoder<Float> {
        do { try configuration.validate() } catch { throw fail("\(error)") }
        // Nothing is allocated for a model the file cannot fill: its size bounds the parameter count.
        let stored = file.entries.filter { !trainingTensors.contains($0.name) }.reduce(0) { $0 + $1.bytes.count / 4 }
        guard configuration.parameterCount == stored else {
            throw fail("the model described holds \(configuration.parameterCount.map(String.init) ?? "too many") parameters but the file's tensors hold \(stored)")
        }
        let model = VariationalAutoencoder<Float>.unfilled(configuration)
        let slots = model.store.layout.slots
        for entry in file.entries where !slots.contains(where: { $0.name == entry.name }) && !trainingTensors.contains(entry.name) {
            throw fail("tensor \(entry.name) is not part of this model")
        }
        for slot in slots {
            guard let entry = file.entry(slot.name) else { throw fail("missing tensor \(slot.name)") }
            guard entry.dtype == "F32" else { throw fail("tensor \(slot.name) is \(entry.dtype), expected F32") }
            guard entry.shape == slot.shape else { throw fail("tensor \(slot.name) has shape \(entry.shape), expected \(slot.shape)") }
            entry.bytes.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(model.store.value(slot)).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
            }
        }
        guard model.store.values.buffer.allSatisfy({ $0.isFinite }) else { throw fail("parameters contain NaN or infinity") }
        return model
    }
}
