import Foundation
import IWAEData
import IWAELinearAlgebra

/// A trained model on disk: `DIR/model.safetensors`.
///
/// Tensors are the model's parameters by name (`encoder.0.weight` (out, in),
/// …, F32). `__metadata__` carries the configuration and the training state
/// as strings, and a CRC-32 of the tensor bytes so that corruption is caught
/// on load instead of being half-loaded.
public struct Checkpoint {
    public static let fileName = "model.safetensors"
    public static let formatName = "iwae-checkpoint"
    public static let formatVersion = 1

    public var model: VariationalAutoencoder<Float>
    /// Training options and provenance (objective, k, epoch, step, seed, data, image size, …).
    public var info: [String: String]
    /// Adam's step and moments, for resuming (tensors `optimizer.first_moment`, `optimizer.second_moment`).
    public var optimizer: (step: Int, firstMoment: [Float], secondMoment: [Float])?
    /// Where the run stands (tensor `trainer.order`, `state_*` metadata), for resuming.
    public var trainingState: TrainingState?

    public init(model: VariationalAutoencoder<Float>, info: [String: String],
                optimizer: Adam<Float>? = nil, trainingState: TrainingState? = nil) {
        self.model = model
        self.info = info
        self.optimizer = optimizer.map { ($0.step, $0.firstMoment.array, $0.secondMoment.array) }
        self.trainingState = trainingState
    }

    /// Tensors a checkpoint may carry besides the model's parameters.
    static let trainingTensors: Set<String> = ["optimizer.first_moment", "optimizer.second_moment", "trainer.order"]

    /// CRC-32 of the metadata (sorted `key=value` lines, checksums excluded).
    static func metadataChecksum(_ metadata: [String: String]) -> UInt32 {
        let text = metadata.keys.sorted().filter { $0 != "checksum_crc32" && $0 != "metadata_crc32" }
            .map { "\($0)=\(metadata[$0]!)\n" }.joined()
        return crc32Checksum(Array(text.utf8)[...])
    }

    static func hex(_ words: [UInt64]) -> String { words.map { String($0, radix: 16) }.joined(separator: ",") }
    static func words(_ text: String) -> [UInt64]? {
        let w = text.split(separator: ",").map { UInt64($0, radix: 16) }
        return w.allSatisfy { $0 != nil } ? w.map { $0! } : nil
    }

    /// The checkpoint file for a path that is either a directory or the file itself.
    public static func path(for location: String) -> String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: location, isDirectory: &isDirectory), !isDirectory.boolValue {
            return location
        }
        return location + "/" + fileName
    }

    /// Image width and height recorded at training time (for PNG output).
    public var imageSize: (width: Int, height: Int)? {
        guard let w = info["image_width"].flatMap(Int.init), let h = info["image_height"].flatMap(Int.init) else { return nil }
        return (w, h)
    }

    public func encoded() -> [UInt8] {
        let store = model.store
        var entries = store.layout.slots.map { slot in
            SafetensorsEntry(name: slot.name, shape: slot.shape,
                             values: UnsafeBufferPointer(start: store.value(slot), count: slot.count))
        }
        var metadata = info
        if let optimizer {
            entries.append(optimizer.firstMoment.withUnsafeBufferPointer { SafetensorsEntry(name: "optimizer.first_moment", shape: [$0.count], values: $0) })
            entries.append(optimizer.secondMoment.withUnsafeBufferPointer { SafetensorsEntry(name: "optimizer.second_moment", shape: [$0.count], values: $0) })
            metadata["optimizer_step"] = String(optimizer.step)
        }
        if let s = trainingState {
            if !s.order.isEmpty {
                entries.append(SafetensorsEntry(name: "trainer.order", dtype: "I32", shape: [s.order.count],
                                                bytes: s.order.withUnsafeBytes { Array($0) }))
            }
            metadata["state_epoch"] = String(s.epoch)
            metadata["state_step"] = String(s.step)
            metadata["state_batch_in_epoch"] = String(s.batchInEpoch)
            metadata["state_bound_sum"] = String(s.boundSum.bitPattern, radix: 16)
            metadata["state_seen"] = String(s.seen)
            metadata["state_generator"] = Checkpoint.hex(s.generator)
            metadata["state_worker_generators"] = s.workerGenerators.map(Checkpoint.hex).joined(separator: ";")
        }
        let c = model.configuration
        metadata["format"] = Checkpoint.formatName
        metadata["format_version"] = String(Checkpoint.formatVersion)
        metadata["data_dimension"] = String(c.dataDimension)
        metadata["latent_dimension"] = String(c.latentDimension)
        metadata["encoder_hidden"] = c.encoderHidden.map(String.init).joined(separator: ",")
        metadata["decoder_hidden"] = c.decoderHidden.map(String.init).joined(separator: ",")
        metadata["activation"] = c.activation.rawValue
        metadata["encoder"] = c.encoder.rawValue
        metadata["prior"] = c.prior.rawValue
        metadata["likelihood"] = c.likelihood.rawValue
        metadata["sigma"] = String(c.sigma)
        metadata["learn_sigma"] = String(c.learnSigma)
        metadata["checksum_crc32"] = String(Checkpoint.checksum(entries))
        metadata["metadata_crc32"] = String(Checkpoint.metadataChecksum(metadata))
        return SafetensorsFile(metadata: metadata, entries: entries).encoded()
    }

    static func checksum(_ entries: [SafetensorsEntry]) -> UInt32 {
        var crc: UInt32 = 0
        for e in entries {
            crc = e.bytes.withUnsafeBufferPointer { crc32Continue(crc, $0) }
        }
        return crc
    }

    /// Writes the checkpoint into `directory` atomically (temporary file,
    /// fsync, rename): the previous checkpoint stays until the new one is whole.
    public func save(to directory: String) throws {
        try writeFileAtomically(encoded(), to: directory + "/" + Checkpoint.fileName)
    }

    /// Loads and validates a checkpoint from a directory or file.
    public static func load(from location: String) throws -> Checkpoint {
        let path = path(for: location)
        guard FileManager.default.fileExists(atPath: path) else {
            throw IWAEError.invalidCheckpoint("no checkpoint at \(location) (expected \(path))")
        }
        let bytes: [UInt8]
        do { bytes = try readFile(path) } catch { throw IWAEError.invalidCheckpoint("\(error)") }
        let file = try SafetensorsFile(parsing: bytes, name: path)
        return try Checkpoint(file, name: path)
    }

    /// Rebuilds the model from parsed safetensors, checking format, version,
    /// checksum and every tensor's name, dtype and shape.
    public init(_ file: SafetensorsFile, name: String) throws {
        func fail(_ why: String) -> IWAEError { .invalidCheckpoint("\(name): \(why)") }
        let m = file.metadata
        guard m["format"] == Checkpoint.formatName else { throw fail("not an iwae checkpoint (no format metadata)") }
        guard let version = m["format_version"].flatMap(Int.init) else { throw fail("missing format_version") }
        guard version == Checkpoint.formatVersion else {
            throw fail("format version \(version) is not supported (this build reads version \(Checkpoint.formatVersion))")
        }
        func int(_ key: String) throws -> Int {
            guard let v = m[key].flatMap(Int.init) else { throw fail("missing or bad \(key)") }
            return v
        }
        func widths(_ key: String) throws -> [Int] {
            guard let s = m[key] else { throw fail("missing \(key)") }
            if s.isEmpty { return [] }
            let parts = s.split(separator: ",").map { Int($0) }
            guard parts.allSatisfy({ $0 != nil }) else { throw fail("bad \(key) \(s)") }
            return parts.map { $0! }
        }
        guard let activation = m["activation"].flatMap(Activation.init(rawValue:)) else { throw fail("missing or bad activation") }
        // Checkpoints written before these options existed are diagonal/standard/Bernoulli.
        func option<T: RawRepresentable>(_ key: String, _ fallback: T) throws -> T where T.RawValue == String {
            guard let raw = m[key] else { return fallback }
            guard let value = T(rawValue: raw) else { throw fail("\(key) '\(raw)' is not supported by this build") }
            return value
        }
        let sigma = m["sigma"].map { Double($0) } ?? 1
        guard let sigma else { throw fail("bad sigma") }
        let configuration = ModelConfiguration(
            dataDimension: try int("data_dimension"), latentDimension: try int("latent_dimension"),
            encoderHidden: try widths("encoder_hidden"), decoderHidden: try widths("decoder_hidden"),
            activation: activation, encoder: try option("encoder", EncoderKind.diagonal),
            prior: try option("prior", PriorKind.standard), likelihood: try option("likelihood", LikelihoodKind.bernoulli),
            sigma: sigma, learnSigma: m["learn_sigma"] == "true")
        do { try configuration.validate() } catch { throw fail("\(error)") }
        if let stored = m["checksum_crc32"] {
            // The checksum covers the tensors in file order.
            guard String(Checkpoint.checksum(file.entries)) == stored else {
                throw fail("checksum mismatch: the file is corrupt")
            }
        }
        if let stored = m["metadata_crc32"], String(Checkpoint.metadataChecksum(m)) != stored {
            throw fail("metadata checksum mismatch: the file is corrupt")
        }
        let model = VariationalAutoencoder<Float>(configuration)
        let slots = model.store.layout.slots
        for entry in file.entries where !slots.contains(where: { $0.name == entry.name }) && !Checkpoint.trainingTensors.contains(entry.name) {
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
        let values = model.store.values.buffer
        guard values.allSatisfy({ $0.isFinite }) else { throw fail("parameters contain NaN or infinity") }
        var optimizer: (step: Int, firstMoment: [Float], secondMoment: [Float])?
        if let m1 = file.entry("optimizer.first_moment"), let m2 = file.entry("optimizer.second_moment") {
            guard m1.dtype == "F32", m2.dtype == "F32", m1.shape == [model.store.values.count], m2.shape == m1.shape,
                  let step = m["optimizer_step"].flatMap(Int.init), step >= 0 else {
                throw fail("malformed optimizer state")
            }
            optimizer = (step, m1.floatValues, m2.floatValues)
        }
        var state: TrainingState?
        if let epoch = m["state_epoch"] {
            var s = TrainingState()
            guard let e = Int(epoch), let step = m["state_step"].flatMap(Int.init),
                  let batch = m["state_batch_in_epoch"].flatMap(Int.init),
                  let sumBits = m["state_bound_sum"].flatMap({ UInt64($0, radix: 16) }),
                  let seen = m["state_seen"].flatMap(Int.init),
                  let generator = m["state_generator"].flatMap(Checkpoint.words), generator.count == 4,
                  let workers = m["state_worker_generators"]?.split(separator: ";").map({ Checkpoint.words(String($0)) }),
                  workers.allSatisfy({ $0?.count == 4 }), e >= 0, step >= 0, batch >= 0, seen >= 0
            else { throw fail("malformed training state") }
            s.epoch = e; s.step = step; s.batchInEpoch = batch; s.boundSum = Double(bitPattern: sumBits); s.seen = seen
            s.generator = generator
            s.workerGenerators = workers.map { $0! }
            if batch > 0 {
                guard let order = file.entry("trainer.order"), order.dtype == "I32", order.shape.count == 1 else {
                    throw fail("training state mid-epoch without trainer.order")
                }
                s.order = order.bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
                guard s.order.allSatisfy({ $0 >= 0 && Int($0) < s.order.count }) else { throw fail("trainer.order is not a permutation") }
            }
            state = s
        }
        var info = m
        for key in ["format", "format_version", "data_dimension", "latent_dimension", "encoder_hidden", "decoder_hidden",
                    "activation", "encoder", "prior", "likelihood", "sigma", "learn_sigma", "checksum_crc32", "metadata_crc32",
                    "optimizer_step"] { info[key] = nil }
        for key in info.keys where key.hasPrefix("state_") { info[key] = nil }
        self.init(model: model, info: info)
        self.optimizer = optimizer
        self.trainingState = state
    }
}
