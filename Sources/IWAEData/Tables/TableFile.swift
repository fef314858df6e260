import Foundation

extension RawTable {
    /// The table in `path`, by its extension: `.npy`, `.npz` (array `key`),
    /// `.csv`, `.tsv`, `.safetensors` (tensor `key`); `columns` chooses
    /// features (by name for a CSV header). Numeric arrays are read in
    /// place (mapped), text is parsed once.
    package init(contentsOf path: String, key: String? = nil, columns: ColumnSelection? = nil) throws {
        let lower = path.lowercased()
        let file = try MappedFile(path)
        var table: RawTable
        var selectable = true
        if lower.hasSuffix(".npy") {
            guard key == nil else { throw DataError.invalidArgument("\(path): --data-key names an array of an .npz or a tensor of a .safetensors file, not of a .npy") }
            table = try NPY.table(.mapped(file, offset: 0), count: file.count, name: path)
        } else if lower.hasSuffix(".npz") {
            table = try NPZ.table(file, key: key)
        } else if lower.hasSuffix(".safetensors") {
            table = try SafetensorsFile.table(file, key: key)
        } else if lower.hasSuffix(".csv") || lower.hasSuffix(".tsv") || lower.hasSuffix(".tab") {
            guard key == nil else { throw DataError.invalidArgument("\(path): --data-key is for .npz and .safetensors files") }
            table = try DelimitedText.table(file, delimiter: lower.hasSuffix(".csv") ? UInt8(ascii: ",") : 0x09, columns: columns)
            selectable = false   // parsed with the selection already
        } else {
            throw DataError.invalidArgument("\(path): unknown kind of data file (.npy, .npz, .csv, .tsv and .safetensors are read; a directory of IDX files is named as it is)")
        }
        if selectable, let columns {
            table = table.selecting(columns: try columns.resolve(count: table.columns, names: table.columnNames, file: table.name))
        }
        table.fingerprint = file.fingerprint
        self = table
    }

    /// Whether `path` names a table file this reader knows (by its extension).
    package static func isTableFile(_ path: String) -> Bool {
        let lower = path.lowercased()
        return [".npy", ".npz", ".csv", ".tsv", ".tab", ".safetensors"].contains { lower.hasSuffix($0) }
    }
}
