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
    /// Training state and provenance (objective, k, epoch, step, seed, data, image size, …).
    public var info: [String: String]

    public init(model: VariationalAutoencoder<Float>, info: [String: String]) {
        self.model = model
        self.info = info
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
        let entries = store.layout.slots.map { slot in
            SafetensorsEntry(name: slot.name, shape: slot.shape,
                             values: UnsafeBufferPointer(start: store.value(slot), count: slot.count))
        }
        let c = model.configuration
        var metadata = info
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
            guard String(Checkpoint.checksum(file.entries)) == stored else {
                throw fail("checksum mismatch: the file is corrupt")
            }
        }
        let model = VariationalAutoencoder<Float>(configuration)
        let slots = model.store.layout.slots
        for entry in file.entries where !slots.contains(where: { $0.name == entry.name }) {
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
        var info = m
        for key in ["format", "format_version", "data_dimension", "latent_dimension", "encoder_hidden", "decoder_hidden",
                    "activation", "encoder", "prior", "likelihood", "sigma", "learn_sigma", "checksum_crc32"] { info[key] = nil }
        self.init(model: model, info: info)
    }
}
