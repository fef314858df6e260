import CBLAS

/// The BLAS library behind the engine, as OpenBLAS reports it.
public enum BLASLibrary {
    /// Threads OpenBLAS uses inside one call. The engine's own workers set
    /// this to 1 while they run products concurrently (one core each).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// The kernel family OpenBLAS chose for this CPU (e.g. `Cooperlake`).
    public static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }
}
